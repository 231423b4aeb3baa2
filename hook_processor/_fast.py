"""A lean path for ListObjectsV2, GetObject, PutObject, UploadPart: SigV4 by hand, one urllib3 pool.

botocore spends about 1 ms of CPU on every request (event hooks, endpoint rules, user agent,
response parsing); this path spends about 0.25 ms (BENCHMARKS.md). On a small machine where
the client shares the CPUs with everything else, that is what many small files are bound by.
Listing, multipart bookkeeping, HEADs and every other call stay on the boto3 client.

The wire behaviour follows botocore's with the same settings: path-style URLs, SigV4,
``x-amz-checksum-crc32`` on uploads and ``x-amz-checksum-mode: ENABLED`` with response checksum
validation on whole-object GETs when the checksum setting is ``when_supported``; the "standard"
retry policy (transient and throttling errors and broken connections, jittered exponential
backoff up to 20 s, a shared retry quota, ``max_attempts`` attempts in all), except that a
refused connection or an unknown host gets a few quick attempts only, as make_client() sets up
for botocore too; errors are botocore's own exception types, so callers handle both paths alike.

:func:`for_client` returns None (and the caller uses boto3) unless the client is one that
:func:`hook_processor.storage.make_client` made for an explicit http(s) endpoint with path-style
addressing and static credentials, without a proxy, and with no event handler added since it
was made (a Stubber, instrumentation or a test hook must see every call, so it gets boto3).
"""

from __future__ import annotations

import base64
import hashlib
import random
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote, unquote_plus, urlsplit
from xml.etree import ElementTree

import urllib3
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    FlexibleChecksumError,
    ReadTimeoutError,
    ResponseStreamingError,
)

from hook_processor._sigv4 import SigV4Signer
from hook_processor._transfer import UNREACHABLE_ATTEMPTS, unreachable, unreachable_delay

SEND_BLOCK = 1024 * 1024  # bytes per socket send of a streamed body
MARK = "_hook_fast_baseline"  # attribute make_client() sets on its clients

# botocore's standard retry mode (botocore/retries/standard.py)
_TRANSIENT_CODES = frozenset(
    {"RequestTimeout", "RequestTimeoutException", "PriorRequestNotComplete"}
)
_TRANSIENT_STATUS = frozenset({500, 502, 503, 504})
_THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    }
)
_MAX_BACKOFF = 20.0
_QUOTA = 500
_RETRY_COST = 5
_TIMEOUT_COST = 10

# Response checksums we validate, in botocore's order of preference (stdlib only).
_RESPONSE_CHECKSUMS: tuple[tuple[str, Callable[[], Any]], ...] = (
    ("crc32", lambda: Crc32()),
    ("sha1", lambda: hashlib.sha1(usedforsecurity=False)),
    ("sha256", lambda: hashlib.sha256()),
)
_EVENTS = (
    "provide-client-params",
    "before-parameter-build",
    "before-call",
    "request-created",
    "before-sign",
    "before-send",
    "needs-retry",
    "after-call",
)
_OPERATIONS = ("ListObjectsV2", "GetObject", "PutObject", "UploadPart")


class Crc32:
    """zlib.crc32 behind hashlib's update()/digest() interface."""

    def __init__(self) -> None:
        self.value = 0

    def update(self, data: bytes) -> None:
        self.value = zlib.crc32(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(4, "big")


def crc32_b64(value: int) -> str:
    return base64.b64encode(value.to_bytes(4, "big")).decode()


def handler_signature(client: Any) -> tuple[int, ...] | None:
    """Identity of the event handlers that would see our operations (None if unknowable)."""
    try:
        handlers = client.meta.events._emitter._handlers  # botocore's prefix trie
        return tuple(
            id(h)
            for op in _OPERATIONS
            for event in _EVENTS
            for h in handlers.prefix_search(f"{event}.s3.{op}")
        )
    except Exception:  # noqa: BLE001 - a botocore without these internals: use boto3
        return None


def for_client(client: Any, settings: Any) -> FastS3 | None:
    """The lean data path for ``client``, or None when boto3 must do the calls (module doc)."""
    baseline = getattr(client, MARK, None)
    if baseline is None or handler_signature(client) != baseline:
        return None
    try:
        meta = client.meta
        if (meta.config.s3 or {}).get("addressing_style") != "path":
            return None
        endpoint = str(meta.endpoint_url)
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
            return None
        session = client._endpoint.http_session
        if session._proxy_config.proxy_url_for(endpoint):
            return None
        verify = session._verify
        credentials = client._request_signer._credentials
        if credentials is None or type(credentials).__name__ != "Credentials":
            return None  # anonymous, or refreshable: leave those to botocore
        frozen = credentials.get_frozen_credentials()
    except Exception:  # noqa: BLE001 - anything unexpected: use boto3
        return None
    return FastS3(endpoint, meta.region_name or "us-east-1", frozen, settings, verify)


class FastS3:
    """GetObject / PutObject / UploadPart with the boto3 client's calling convention."""

    def __init__(
        self, endpoint: str, region: str, credentials: Any, settings: Any, verify: Any
    ) -> None:
        parts = urlsplit(endpoint)
        self.endpoint_url = endpoint
        self.scheme = parts.scheme
        self.host = parts.hostname or ""
        default_port = 443 if parts.scheme == "https" else 80
        self.port = parts.port or default_port
        self.netloc = self.host if self.port == default_port else f"{self.host}:{self.port}"
        if ":" in self.host:  # IPv6 literal
            self.netloc = f"[{self.host}]" + ("" if self.port == default_port else f":{self.port}")
        self.base = parts.path.rstrip("/")
        self.signer = SigV4Signer(
            credentials.access_key, credentials.secret_key, credentials.token, region, self.netloc
        )
        self.checksum = settings.checksum == "when_supported"
        self.attempts = max(1, int(settings.max_attempts))
        self.user_agent = _user_agent()
        timeout = urllib3.Timeout(connect=settings.connect_timeout, read=settings.read_timeout)
        common: dict[str, Any] = {
            "maxsize": max(1, settings.concurrency) + 4,
            "block": False,
            "retries": False,
            "timeout": timeout,
            "blocksize": SEND_BLOCK,
        }
        if self.scheme == "https":
            if verify is False:
                common["cert_reqs"] = "CERT_NONE"
            else:
                from botocore.httpsession import get_cert_path

                common["cert_reqs"] = "CERT_REQUIRED"
                common["ca_certs"] = get_cert_path(verify)
            self.pool: urllib3.HTTPConnectionPool = urllib3.HTTPSConnectionPool(
                self.host, self.port, **common
            )
        else:
            self.pool = urllib3.HTTPConnectionPool(self.host, self.port, **common)
        self._quota = _QUOTA
        self._quota_lock = threading.Lock()

    # ---------------------------------------------------------------- operations

    def get_object(
        self,
        *,
        Bucket: str,  # noqa: N803 - boto3's parameter names
        Key: str,  # noqa: N803
        Range: str | None = None,  # noqa: N803
        IfMatch: str | None = None,  # noqa: N803
    ) -> dict[str, Any]:
        headers: dict[str, str] = {}
        if Range:
            headers["Range"] = Range
        if IfMatch:
            headers["If-Match"] = IfMatch
        if self.checksum:
            headers["x-amz-checksum-mode"] = "ENABLED"
        response, retries = self._request("GetObject", "GET", Bucket, Key, {}, headers, None)
        validate = self.checksum and response.status == 200 and not Range
        return {
            "Body": _Body(
                response, self.endpoint_url, _expected_checksum(response) if validate else None
            ),
            "ContentLength": int(response.headers.get("content-length", 0)),
            "ETag": response.headers.get("etag", ""),
            "ResponseMetadata": _metadata(response, retries),
        }

    def list_objects_v2(
        self,
        *,
        Bucket: str,  # noqa: N803
        Prefix: str = "",  # noqa: N803
        ContinuationToken: str | None = None,  # noqa: N803
    ) -> dict[str, Any]:
        """One page: Contents (Key, Size, ETag), IsTruncated, NextContinuationToken.

        Keys are asked URL-encoded and decoded here, as botocore does; timestamps and owners are
        not parsed (botocore's date parsing alone costs ~0.1 ms per key).
        """
        query = {"list-type": "2", "encoding-type": "url", "prefix": Prefix}
        if ContinuationToken:
            query["continuation-token"] = ContinuationToken
        response, retries = self._request("ListObjectsV2", "GET", Bucket, None, query, {}, None)
        try:
            payload = response.read()
        except (urllib3.exceptions.HTTPError, OSError) as err:
            response.close()
            raise ConnectionClosedError(endpoint_url=self.endpoint_url, error=err) from err
        finally:
            response.release_conn()
        root = ElementTree.fromstring(payload)
        ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
        encoded = (root.findtext(f"{ns}EncodingType") or "").lower() == "url"
        contents = []
        for item in root.iter(f"{ns}Contents"):
            key = item.findtext(f"{ns}Key") or ""
            contents.append(
                {
                    "Key": unquote_plus(key) if encoded else key,
                    "Size": int(item.findtext(f"{ns}Size") or 0),
                    "ETag": item.findtext(f"{ns}ETag") or "",
                }
            )
        page: dict[str, Any] = {
            "Contents": contents,
            "IsTruncated": (root.findtext(f"{ns}IsTruncated") or "").lower() == "true",
            "ResponseMetadata": _metadata(response, retries),
        }
        token = root.findtext(f"{ns}NextContinuationToken")
        if token:
            page["NextContinuationToken"] = token
        return page

    def put_object(
        self,
        *,
        Bucket: str,  # noqa: N803
        Key: str,  # noqa: N803
        Body: bytes | FileRange,  # noqa: N803
        sha256: str | None = None,
        crc32: int | None = None,
    ) -> dict[str, Any]:
        return self._upload("PutObject", Bucket, Key, {}, Body, sha256, crc32)

    def upload_part(
        self,
        *,
        Bucket: str,  # noqa: N803
        Key: str,  # noqa: N803
        UploadId: str,  # noqa: N803
        PartNumber: int,  # noqa: N803
        Body: bytes | FileRange,  # noqa: N803
        sha256: str | None = None,
        crc32: int | None = None,
    ) -> dict[str, Any]:
        query = {"partNumber": str(PartNumber), "uploadId": UploadId}
        return self._upload("UploadPart", Bucket, Key, query, Body, sha256, crc32)

    def _upload(
        self,
        operation: str,
        bucket: str,
        key: str,
        query: dict[str, str],
        body: bytes | FileRange,
        sha256: str | None,
        crc32: int | None,
    ) -> dict[str, Any]:
        headers = {"Content-Length": str(len(body))}
        if self.checksum:
            if crc32 is None:
                crc32 = body.crc32() if isinstance(body, FileRange) else zlib.crc32(body)
            headers["x-amz-checksum-crc32"] = crc32_b64(crc32)
            headers["x-amz-sdk-checksum-algorithm"] = "CRC32"
        if sha256 is None and isinstance(body, bytes):
            sha256 = hashlib.sha256(body).hexdigest()
        response, retries = self._request(
            operation, "PUT", bucket, key, query, headers, body, payload_sha256=sha256
        )
        try:
            response.drain_conn()
        finally:
            response.release_conn()
        return {
            "ETag": response.headers.get("etag", ""),
            "ResponseMetadata": _metadata(response, retries),
        }

    # ---------------------------------------------------------------- one request, retried

    def _request(
        self,
        operation: str,
        method: str,
        bucket: str,
        key: str | None,
        query: dict[str, str],
        headers: dict[str, str],
        body: bytes | FileRange | None,
        *,
        payload_sha256: str | None = None,
    ) -> tuple[urllib3.BaseHTTPResponse, int]:
        path = f"{self.base}/{quote(bucket, safe='')}"
        if key is not None:
            path += f"/{quote(key, safe='/~')}"
        canonical_query = "&".join(
            f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(query.items())
        )
        target = f"{path}?{canonical_query}" if canonical_query else path
        attempt = 0
        while True:
            attempt += 1
            signed = self.signer.sign(method, path, canonical_query, headers, payload_sha256)
            signed["User-Agent"] = self.user_agent
            signed["amz-sdk-request"] = f"attempt={attempt}; max={self.attempts}"
            data: Any = body if not isinstance(body, FileRange) else body.chunks()
            try:
                response = self.pool.urlopen(
                    method,
                    target,
                    body=data,
                    headers=signed,
                    preload_content=False,
                    decode_content=False,
                    redirect=False,
                    assert_same_host=False,
                    release_conn=False,
                    chunked=False,
                )
            except (urllib3.exceptions.HTTPError, OSError) as err:
                error = _connection_error(err, self.endpoint_url)
                if unreachable(err) is not None:  # answered at once: a few quick attempts
                    if attempt < min(self.attempts, UNREACHABLE_ATTEMPTS) and self._take(
                        _RETRY_COST
                    ):
                        time.sleep(unreachable_delay(attempt))
                        continue
                elif attempt < self.attempts and self._take(
                    _TIMEOUT_COST if _is_timeout(err) else _RETRY_COST
                ):
                    self._sleep(attempt)
                    continue
                raise error from err
            if response.status < 300:
                self._refund()
                return response, attempt - 1
            payload = _read_error_body(response)
            code, message = _parse_error(payload, response.status)
            retryable = (
                response.status in _TRANSIENT_STATUS
                or code in _TRANSIENT_CODES
                or code in _THROTTLING_CODES
            )
            if retryable and attempt < self.attempts and self._take(_RETRY_COST):
                self._sleep(attempt)
                continue
            meta = _metadata(response, attempt - 1)
            if retryable:
                meta["MaxAttemptsReached"] = True
            raise ClientError(
                {"Error": {"Code": code, "Message": message}, "ResponseMetadata": meta}, operation
            )

    def _take(self, cost: int) -> bool:
        with self._quota_lock:
            if self._quota < cost:
                return False
            self._quota -= cost
            return True

    def _refund(self) -> None:
        if self._quota < _QUOTA:
            with self._quota_lock:
                self._quota = min(_QUOTA, self._quota + 1)

    @staticmethod
    def _sleep(attempt: int) -> None:
        time.sleep(random.random() * min(2.0 ** (attempt - 1), _MAX_BACKOFF))

    def close(self) -> None:
        self.pool.close()


class FileRange:
    """``length`` bytes of the file ``path`` from ``offset``, streamed in SEND_BLOCK pieces.

    A file that shrank while it is sent ends the body early: the server sees a short request
    and the caller's size or ETag check fails; nothing is buffered beyond one block.
    """

    def __init__(
        self, path: str, offset: int, length: int, on_short: Callable[[], BaseException]
    ) -> None:
        self.path = path
        self.offset = offset
        self.length = length
        self.on_short = on_short

    def __len__(self) -> int:
        return self.length

    def chunks(self) -> Iterator[bytes]:
        with open(self.path, "rb", buffering=0) as fh:
            fh.seek(self.offset)
            left = self.length
            while left > 0:
                block = fh.read(min(SEND_BLOCK, left))
                if not block:
                    raise self.on_short()
                left -= len(block)
                yield block

    def crc32(self) -> int:
        value = 0
        for block in self.chunks():
            value = zlib.crc32(block, value)
        return value


class _Body:
    """The GET body: ``read(n)`` / ``close()``, transport errors as botocore's, checksum checked."""

    def __init__(
        self,
        response: urllib3.BaseHTTPResponse,
        endpoint: str,
        expected: tuple[str, str, Any] | None,
    ) -> None:
        self._response = response
        self._endpoint = endpoint
        self._expected = expected
        self._done = False

    def read(self, amt: int | None = None) -> bytes:
        try:
            data = self._response.read(amt)
        except urllib3.exceptions.ReadTimeoutError as err:
            raise ReadTimeoutError(endpoint_url=self._endpoint, error=err) from err
        except (urllib3.exceptions.HTTPError, OSError) as err:
            raise ResponseStreamingError(error=err) from err
        if self._expected is not None:
            if data:
                self._expected[2].update(data)
            else:
                name, want, digest = self._expected
                got = base64.b64encode(digest.digest()).decode()
                self._expected = None
                if got != want:
                    raise FlexibleChecksumError(
                        error_msg=f"Expected checksum {want} did not match calculated "
                        f"checksum: {got}"
                    )
        if not data:
            self._done = True
        return data

    def close(self) -> None:
        if self._done:
            self._response.release_conn()  # fully read: the connection goes back to the pool
        else:
            self._response.close()  # abandoned mid-body: never reuse that connection
            self._response.release_conn()


def _expected_checksum(response: urllib3.BaseHTTPResponse) -> tuple[str, str, Any] | None:
    for name, make in _RESPONSE_CHECKSUMS:
        value = response.headers.get(f"x-amz-checksum-{name}")
        if value and "-" not in value:
            return name, value, make()
    return None


def _metadata(response: urllib3.BaseHTTPResponse, retries: int) -> dict[str, Any]:
    return {
        "HTTPStatusCode": response.status,
        "HTTPHeaders": {k.lower(): v for k, v in response.headers.items()},
        "RetryAttempts": retries,
    }


def _read_error_body(response: urllib3.BaseHTTPResponse) -> bytes:
    try:
        data = response.read(64 * 1024)
        response.drain_conn()
        return data
    except (urllib3.exceptions.HTTPError, OSError):
        response.close()
        return b""
    finally:
        response.release_conn()


def _parse_error(payload: bytes, status: int) -> tuple[str, str]:
    code, message = str(status), ""
    if payload:
        try:
            root = ElementTree.fromstring(payload)
        except ElementTree.ParseError:
            return code, message
        for element in root.iter():
            tag = element.tag.rsplit("}", 1)[-1]
            if tag == "Code" and element.text:
                code = element.text
            elif tag == "Message" and element.text:
                message = element.text
    if code == str(status) and not message:
        message = {404: "Not Found", 412: "Precondition Failed", 403: "Forbidden"}.get(status, "")
    return code, message


def _is_timeout(err: BaseException) -> bool:
    return isinstance(err, urllib3.exceptions.TimeoutError) and not isinstance(
        err, urllib3.exceptions.NewConnectionError
    )


def _connection_error(err: BaseException, endpoint: str) -> Exception:
    # NewConnectionError (refused, unknown host, no route) subclasses ConnectTimeoutError in
    # urllib3: test it first, as botocore's own HTTP session does, or a refusal reads "timeout".
    if isinstance(err, urllib3.exceptions.NewConnectionError | ConnectionRefusedError):
        return EndpointConnectionError(endpoint_url=endpoint, error=err)
    if isinstance(err, urllib3.exceptions.ConnectTimeoutError):
        return ConnectTimeoutError(endpoint_url=endpoint, error=err)
    if isinstance(err, urllib3.exceptions.ReadTimeoutError):
        return ReadTimeoutError(endpoint_url=endpoint, error=err)
    return ConnectionClosedError(endpoint_url=endpoint, error=err)


def _user_agent() -> str:
    import platform

    from hook_processor import __version__

    python = platform.python_version()
    return f"hook-processor/{__version__} Python/{python} urllib3/{urllib3.__version__}"
