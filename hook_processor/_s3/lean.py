"""The lean engine: the S3 calls of a run with SigV4 by hand, on one urllib3 pool.

botocore spends about 1 ms of CPU on every request (event hooks, endpoint rules, user agent,
response parsing); this path spends about 0.25 ms (BENCHMARKS.md). On a small machine where
the client shares the CPUs with everything else, that is what many small files are bound by.
ListObjectsV2, GetObject, PutObject and UploadPart are here; HEAD, DELETE and the multipart
bookkeeping in lean_control.py; presigning and the rare calls go to the boto3 client of the same
store, made at its first use (boto.LazyClient), which a PRIVATE run never needs.

Every upload carries ``Content-MD5``, signed, in both checksum modes: every store verifies it
(BadDigest). A PutObject is also signed with its body's real SHA-256 (which the runtime computes
for the manifest anyway) and, with ``when_supported``, carries ``x-amz-checksum-crc32``, the
stored checksum that whole-object GETs ask for (``x-amz-checksum-mode: ENABLED``) and validate.
An UploadPart is ``UNSIGNED-PAYLOAD`` with its Content-MD5 only: one pass over its bytes for one
check, where a signed SHA-256 and a CRC32 (part of a composite checksum that no whole GET can
check) were two more. Otherwise it follows botocore: path-style URLs, SigV4, the "standard"
retry policy (transient and throttling errors and broken connections, jittered exponential
backoff up to 20 s, a shared retry quota, ``max_attempts`` attempts in all), except that a
refused connection or an unknown host gets a few quick attempts only, as the boto3 client is set
up to do too; errors are botocore's own exception types, so callers handle both engines alike.

It is chosen explicitly (``HOOK_S3_ENGINE=lean``), or by ``auto`` where obstore cannot be used
(engine.py), and never swaps itself for boto3: an endpoint behind an HTTP proxy is refused at
creation with the fix named.
"""

from __future__ import annotations

import threading
import time
from typing import Any
from urllib.parse import quote, unquote_plus, urlsplit
from xml.etree import ElementTree

import urllib3
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    NoCredentialsError,
)

from hook_processor._s3 import wire
from hook_processor._s3.boto import BotoPresign, ca_bundle, endpoint_of
from hook_processor._s3.engine import SEND_BLOCK, Payload, TransferSettings
from hook_processor._s3.lean_control import LeanControl
from hook_processor._s3.retry import RetryPolicy
from hook_processor._s3.sigv4 import SigV4Signer
from hook_processor._s3.transfer import cause
from hook_processor.errors import OptionsError


class LeanEngine(LeanControl, BotoPresign):
    """The :class:`~hook_processor._s3.engine.Engine` of hand-signed requests (module doc).

    HEAD, DELETE and multipart bookkeeping are :class:`LeanControl`'s; presigning is
    :class:`BotoPresign`'s, on the boto3 client.
    """

    name = "lean"
    choice = "HOOK_S3_ENGINE"

    def __init__(
        self, client: Any, credentials: Any, settings: TransferSettings, *, user_agent: str
    ) -> None:
        self.boto = client  # presigning, and what a harness or test asks of it
        endpoint, region = endpoint_of(client)
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
            raise OptionsError(
                f"S3 endpoint {endpoint!r}: HOOK_S3_ENGINE=lean needs an http(s)://host[:port] "
                "endpoint; fix the endpoint or set HOOK_S3_ENGINE=boto3"
            )
        proxy = proxy_for(endpoint)
        if proxy:
            raise OptionsError(
                f"S3 endpoint {endpoint}: the environment sends it through an HTTP proxy "
                f"({proxy.upper()}_PROXY), which HOOK_S3_ENGINE=lean does not support; set "
                f"HOOK_S3_ENGINE=boto3, or NO_PROXY={parts.hostname} to reach it directly"
            )
        self.endpoint_url = endpoint
        self.scheme = parts.scheme
        self.host = parts.hostname or ""
        default_port = 443 if parts.scheme == "https" else 80
        self.port = parts.port or default_port
        self.netloc = self.host if self.port == default_port else f"{self.host}:{self.port}"
        if ":" in self.host:  # IPv6 literal
            self.netloc = f"[{self.host}]" + ("" if self.port == default_port else f":{self.port}")
        self.base = parts.path.rstrip("/")
        self.region = region
        self._credentials = credentials  # botocore's: refreshable ones refresh on their own
        self._frozen: Any = None
        self._signer: SigV4Signer | None = None
        self._signer_lock = threading.Lock()
        self.checksum = settings.checksum == "when_supported"
        self.retry = RetryPolicy(settings.max_attempts, settings.throttle_seconds)
        self.user_agent = f"{user_agent} Python/{_python()} urllib3/{urllib3.__version__}"
        timeout = urllib3.Timeout(connect=settings.connect_timeout, read=settings.read_timeout)
        common: dict[str, Any] = {
            "maxsize": max(1, settings.concurrency) + 4,
            "block": False,
            "retries": False,
            "timeout": timeout,
            "blocksize": SEND_BLOCK,
        }
        if self.scheme == "https":
            from botocore.httpsession import get_cert_path

            common["cert_reqs"] = "CERT_REQUIRED"
            common["ca_certs"] = get_cert_path(ca_bundle() or True)  # as the boto3 client
            self.pool: urllib3.HTTPConnectionPool = urllib3.HTTPSConnectionPool(
                self.host, self.port, **common
            )
        else:
            self.pool = urllib3.HTTPConnectionPool(self.host, self.port, **common)

    def signer(self) -> SigV4Signer:
        """The signer of the current credentials (botocore refreshes refreshable ones)."""
        if self._credentials is None:
            raise NoCredentialsError()
        frozen = self._credentials.get_frozen_credentials()
        with self._signer_lock:
            if self._signer is None or frozen != self._frozen:
                self._frozen = frozen
                self._signer = SigV4Signer(
                    frozen.access_key, frozen.secret_key, frozen.token, self.region, self.netloc
                )
            return self._signer

    # ---------------------------------------------------------------- data calls: by hand

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
            "Body": wire.GetBody(
                response, self.endpoint_url, wire.expected_checksum(response) if validate else None
            ),
            "ContentLength": int(response.headers.get("content-length", 0)),
            "ETag": response.headers.get("etag", ""),
            "ResponseMetadata": wire.metadata(response, retries),
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
            "ResponseMetadata": wire.metadata(response, retries),
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
        Body: Payload,  # noqa: N803
        IfNoneMatch: str | None = None,  # noqa: N803
        ContentType: str | None = None,  # noqa: N803
    ) -> dict[str, Any]:
        headers: dict[str, str] = {}
        if IfNoneMatch:
            headers["If-None-Match"] = IfNoneMatch
        if ContentType:
            headers["Content-Type"] = ContentType
        # Signed with the body's real SHA-256, which the caller needs anyway (the file's, for the
        # manifest), and CRC32 where flexible checksums are wanted: what a validated GET checks.
        if self.checksum:
            headers["x-amz-checksum-crc32"] = wire.crc32_b64(Body.crc32())
            headers["x-amz-sdk-checksum-algorithm"] = "CRC32"
        return self._upload("PutObject", Bucket, Key, {}, Body, headers, Body.sha256())

    def upload_part(
        self,
        *,
        Bucket: str,  # noqa: N803
        Key: str,  # noqa: N803
        UploadId: str,  # noqa: N803
        PartNumber: int,  # noqa: N803
        Body: Payload,  # noqa: N803
    ) -> dict[str, Any]:
        query = {"partNumber": str(PartNumber), "uploadId": UploadId}
        # Content-MD5 only (UNSIGNED-PAYLOAD): a part's flexible checksum would be part of a
        # composite (``...-N``) that no whole GET can check, and a signed SHA-256 a second pass
        # over its bytes for a check that Content-MD5 already makes.
        return self._upload("UploadPart", Bucket, Key, query, Body, {}, None)

    def _upload(
        self,
        operation: str,
        bucket: str,
        key: str,
        query: dict[str, str],
        body: Payload,
        headers: dict[str, str],
        payload_sha256: str | None,  # None: UNSIGNED-PAYLOAD (sigv4.py)
    ) -> dict[str, Any]:
        headers["Content-Length"] = str(len(body))
        # Content-MD5 in both modes, signed: every store verifies it (BadDigest).
        headers["Content-MD5"] = body.content_md5()
        response, retries = self._request(
            operation, "PUT", bucket, key, query, headers, body, payload_sha256=payload_sha256
        )
        try:
            response.drain_conn()
        finally:
            response.release_conn()
        return {
            "ETag": response.headers.get("etag", ""),
            "ResponseMetadata": wire.metadata(response, retries),
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
        body: Payload | None,
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
        attempts = self.retry.attempts()
        while True:
            attempt = attempts.start()
            signed = self.signer().sign(method, path, canonical_query, headers, payload_sha256)
            signed["User-Agent"] = self.user_agent
            signed["amz-sdk-request"] = f"attempt={attempt}; max={self.retry.max_attempts}"
            data = None if body is None else body.data
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
                error = wire.connection_error(err, self.endpoint_url)
                wait = attempts.after_failure(cause(err), timeout=wire.is_timeout(err))
                if wait is None:
                    raise error from err
                time.sleep(wait)
                continue
            if response.status < 300:
                attempts.succeeded()
                return response, attempts.retries
            payload = wire.read_error_body(response)
            code, message = wire.parse_error(payload, response.status)
            wait = attempts.after_answer(response.status, code)
            if wait is not None:
                time.sleep(wait)
                continue
            meta = wire.metadata(response, attempts.retries)
            if attempts.gave_up_retrying:
                meta["MaxAttemptsReached"] = True
            raise ClientError(
                {"Error": {"Code": code, "Message": message}, "ResponseMetadata": meta}, operation
            )

    def close(self) -> None:
        self.pool.close()
        self.boto.close()


def _python() -> str:
    import platform

    return platform.python_version()


def proxy_for(url: str) -> str | None:
    """The scheme whose proxy the environment applies to ``url`` (as botocore reads it), or None."""
    import urllib.request

    parts = urlsplit(url)
    if not urllib.request.getproxies().get(parts.scheme):
        return None
    if urllib.request.proxy_bypass(parts.netloc):
        return None
    return parts.scheme
