"""The obstore engine: GetObject and PutObject on obstore (Rust ``object_store``), the rest not.

obstore moves bodies in Rust, off the GIL, at about half the client CPU per request of the lean
engine (BENCHMARKS.md). Its Python API has no UploadPart of a given upload id, no continuation
tokens and no response headers, so:

* GetObject (whole or ranged, ``If-Match`` pinned) and PutObject (``If-None-Match: *`` included)
  go through obstore, one ``S3Store`` per bucket, sized for ``concurrency`` connections;
* ListObjectsV2 and UploadPart go to a *helper* engine, the lean one (or the boto3 one for an
  endpoint behind an HTTP proxy, which the lean engine does not speak through): a listing keeps
  its pages and tokens (a store that repeats a token is caught, ``download.py``), and a part is
  sent with Content-MD5 and the SHA-256 the runtime already computed;
* a store that answers a ranged GET with ``200`` and ``Content-Range`` (``rclone serve s3``),
  which object_store refuses ("non-partial response"), gets that GET and every later ranged GET
  of the engine from the helper, which reads such answers;
* a key that object_store's ``Path`` cannot name exactly (a leading or trailing ``/``, an empty,
  ``.`` or ``..`` segment, a control character: :func:`plain`) is sent by the helper too;
* HEAD, DELETE and the multipart bookkeeping go to the helper too; presigning to the boto3
  client, as for every engine.

**Retries are ours.** obstore's own retries are off (``max_retries`` 0): the engine retries with the
lean engine's policy, ``retry.py`` (transient 5xx and broken connections with jittered backoff and
``max_attempts`` attempts; a refused connection or unknown host a few quick attempts; throttling for
``throttle_seconds``; a retry quota) and reports each request's retries in ``ResponseMetadata``, so
that the runtime counts them as for the other engines. obstore's errors are translated to botocore's
types: a ClientError with the store's status and error code (404 NoSuchKey, 412, 503 SlowDown ...),
``EndpointConnectionError`` around the cause of a refused connection or unknown host, botocore's
``SSLError`` / timeouts, and ``ResponseStreamingError`` for a body broken after the 200. obstore
says the status and the store's error XML only in its message, which is parsed.

**Every PUT is checked.** object_store signs the real SHA-256 of every body (never
``UNSIGNED-PAYLOAD``), in both checksum modes, and sends ``x-amz-checksum-sha256`` with
``when_supported``: stores that verify SigV4 payloads (AWS, MinIO, Ceph) reject a corrupted body.
It cannot send Content-MD5 (no per-request headers), and some stores verify neither
(``rclone serve s3``, moto): the ETag such a store answers is the MD5 of the bytes it stored, and
a hex ETag that is not the body's MD5 (on an object without SSE-KMS or SSE-C, whose ETags are
not MD5s: one HEAD says) is a ``BadDigest`` ClientError here, and the corrupted object is
deleted. Downloads have no
response headers to validate: ``download.py`` checks them against the MD5 ETag, as for any GET
without a stored checksum; a body that does not match it is called corrupt only after one HEAD
says the object has no SSE-KMS or SSE-C (whose ETags are no MD5s), and a large object's check
comes from its HEAD anyway.
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
    ResponseStreamingError,
    SSLError,
)

from hook_processor._s3 import wire
from hook_processor._s3.boto import BotoPresign, ca_bundle, endpoint_of
from hook_processor._s3.engine import Engine, Payload, TransferSettings
from hook_processor._s3.retry import RetryPolicy
from hook_processor._s3.transfer import READ_CHUNK, cause
from hook_processor.errors import OptionsError

T = TypeVar("T")

_STATUS = re.compile(r"status code: (\d{3})")
_HEX_ETAG = re.compile(r"[0-9a-f]{32}")
_NOT_PARTIAL = "non-partial response"
# A day for one request: a multi-GB body on a slow link must not be cut; stalls are caught by
# the read timeout (per read), which object_store applies between chunks.
_REQUEST_TIMEOUT = "86400s"


class ObstoreEngine(BotoPresign):
    """The :class:`~hook_processor._s3.engine.Engine` of obstore (module doc).

    Presigning is :class:`BotoPresign`'s; ListObjectsV2, UploadPart, HEAD, DELETE, the multipart
    bookkeeping and the ranged GETs of a store without partial answers are ``helper``'s.
    """

    name = "obstore"
    choice = "HOOK_S3_ENGINE"

    def __init__(
        self,
        client: Any,
        credentials: Any,
        settings: TransferSettings,
        *,
        user_agent: str,
        proxy: str | None,
        helper: Engine,
    ) -> None:
        self.boto = client
        self.endpoint_url, self._region = endpoint_of(client)
        self._helper = helper
        import obstore  # lazy: only a run that chose this engine loads the Rust extension

        self._obs = obstore
        self._credentials = credentials
        self._settings = settings
        self._user_agent = f"{user_agent} obstore/{obstore.__version__}"
        self._proxy = proxy
        self._stores: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._ranges = True  # False once the store answered a ranged GET with a 200
        self._roots = _roots(self.endpoint_url)
        reason = unusable()
        if reason:
            raise OptionsError(
                f"HOOK_S3_ENGINE=obstore cannot start: {reason} (obstore's TLS reads it); point "
                "SSL_CERT_FILE at a PEM file of CA certificates, unset it, or set "
                "HOOK_S3_ENGINE=lean"
            )
        self.retry = RetryPolicy(settings.max_attempts, settings.throttle_seconds)

    # ---------------------------------------------------------------- the stores

    def _store(self, bucket: str) -> Any:
        with self._lock:
            store = self._stores.get(bucket)
            if store is None:
                store = self._stores[bucket] = self._make_store(bucket)
            return store

    def _make_store(self, bucket: str) -> Any:
        from obstore.store import S3Store

        if self._credentials is None:
            raise NoCredentialsError()
        s = self._settings
        options: dict[str, Any] = {
            "allow_http": urlsplit(self.endpoint_url).scheme == "http",
            "connect_timeout": f"{s.connect_timeout}s",
            "read_timeout": f"{s.read_timeout}s",
            "timeout": _REQUEST_TIMEOUT,
            "pool_max_idle_per_host": str(max(1, s.concurrency) + 4),
            "user_agent": self._user_agent,
        }
        if self._roots is not None:
            options["root_certificate"] = self._roots
        if self._proxy:
            options["proxy_url"] = self._proxy
        config: dict[str, Any] = {
            "endpoint": self.endpoint_url,
            "region": self._region,
            "virtual_hosted_style_request": False,
        }
        if s.checksum == "when_supported":
            config["checksum_algorithm"] = "sha256"
        made: dict[str, Any] = {  # obstore's TypedDicts are not importable at run time
            "config": config,
            "client_options": options,
            "retry_config": {"max_retries": 0},  # ours retry (module doc)
            # Not a method of the engine: a cycle through the Rust store is never collected,
            # and it would keep the store's connections open after close().
            "credential_provider": _Credentials(self._credentials),
        }
        return S3Store(bucket, **made)

    def close(self) -> None:
        """Close the connections: obstore's (its stores dropped) and the boto3 client's."""
        with self._lock:
            self._stores.clear()
        self._helper.close()  # and the boto3 client, which it shares

    # ---------------------------------------------------------------- data calls

    def list_objects_v2(self, **params: Any) -> dict[str, Any]:
        return self._helper.list_objects_v2(**params)

    def upload_part(self, **params: Any) -> dict[str, Any]:
        return self._helper.upload_part(**params)

    # ---------------------------------------------------------------- control calls: helper's

    def head_object(self, **params: Any) -> dict[str, Any]:
        return self._helper.head_object(**params)

    def head_bucket(self, **params: Any) -> dict[str, Any]:
        return self._helper.head_bucket(**params)

    def delete_object(self, **params: Any) -> dict[str, Any]:
        return self._helper.delete_object(**params)

    def create_multipart_upload(self, **params: Any) -> dict[str, Any]:
        return self._helper.create_multipart_upload(**params)

    def complete_multipart_upload(self, **params: Any) -> dict[str, Any]:
        return self._helper.complete_multipart_upload(**params)

    def abort_multipart_upload(self, **params: Any) -> dict[str, Any]:
        return self._helper.abort_multipart_upload(**params)

    def get_object(
        self,
        *,
        Bucket: str,  # noqa: N803 - boto3's parameter names
        Key: str,  # noqa: N803
        Range: str | None = None,  # noqa: N803
        IfMatch: str | None = None,  # noqa: N803
    ) -> dict[str, Any]:
        if (Range and not self._ranges) or not plain(Key):
            return self._helper.get_object(Bucket=Bucket, Key=Key, Range=Range, IfMatch=IfMatch)
        options: dict[str, Any] = {}
        if Range:
            start, end = Range.removeprefix("bytes=").split("-")
            options["range"] = (int(start), int(end) + 1)
        if IfMatch:
            options["if_match"] = IfMatch
        store = self._store(Bucket)
        try:
            result, retries = self._retrying(
                "GetObject", lambda: self._obs.get(store, Key, options=options)
            )
        except _NotPartial:
            self._ranges = False  # this store answers ranges with a 200: the helper reads those
            return self._helper.get_object(Bucket=Bucket, Key=Key, Range=Range, IfMatch=IfMatch)
        start, end = result.range
        meta = result.meta
        return {
            "Body": _Body(result.stream(min_chunk_size=READ_CHUNK)),
            "ContentLength": end - start,
            "ETag": meta.get("e_tag") or "",
            "ResponseMetadata": _metadata(206 if Range else 200, retries),
        }

    def put_object(
        self,
        *,
        Bucket: str,  # noqa: N803
        Key: str,  # noqa: N803
        Body: Payload,  # noqa: N803
        IfNoneMatch: str | None = None,  # noqa: N803
        ContentType: str | None = None,  # noqa: N803
    ) -> dict[str, Any]:
        if not plain(Key):
            return self._helper.put_object(
                Bucket=Bucket, Key=Key, Body=Body, IfNoneMatch=IfNoneMatch, ContentType=ContentType
            )
        store = self._store(Bucket)
        kwargs: dict[str, Any] = {"use_multipart": False}
        if IfNoneMatch == "*":
            kwargs["mode"] = "create"
        elif IfNoneMatch:
            raise ValueError(f"IfNoneMatch={IfNoneMatch!r}: only '*' is supported")
        if ContentType:
            kwargs["attributes"] = {"Content-Type": ContentType}
        result, retries = self._retrying(
            "PutObject", lambda: self._obs.put(store, Key, Body.data, **kwargs)
        )
        etag = str(result.get("e_tag") or "")
        md5 = Body.md5()
        stored = etag.strip('"').lower()
        if _HEX_ETAG.fullmatch(stored) and stored != md5 and not self._encrypted(Bucket, Key):
            # A store that did not verify the signed SHA-256 stored other bytes than were sent:
            # they are removed (as a store that verifies would never have kept them).
            with contextlib.suppress(ClientError, BotoCoreError):
                self._helper.delete_object(Bucket=Bucket, Key=Key)
            raise ClientError(
                {
                    "Error": {
                        "Code": "BadDigest",
                        "Message": f"the store answered ETag {stored}, but the MD5 of the body "
                        f"sent is {md5}: the upload was corrupted on the way",
                    },
                    "ResponseMetadata": _metadata(400, retries),
                },
                "PutObject",
            )
        return {"ETag": etag, "ResponseMetadata": _metadata(200, retries)}

    def _encrypted(self, bucket: str, key: str) -> bool:
        """Whether the object is stored with SSE-KMS or SSE-C, whose ETag is not the MD5 of the
        bytes (a store that encrypts so is AWS-like: it verified the signed SHA-256)."""
        try:
            head = self._helper.head_object(Bucket=bucket, Key=key)
        except (ClientError, BotoCoreError):
            return False
        sse = str(head.get("ServerSideEncryption") or "AES256").upper()
        return sse != "AES256" or bool(head.get("SSECustomerAlgorithm"))

    # ---------------------------------------------------------------- one request, retried

    def _retrying(self, operation: str, call: Callable[[], T]) -> tuple[T, int]:
        """``call()`` with the engines' retry policy (``retry.py``); (its result, the retries
        it took)."""
        attempts = self.retry.attempts()
        while True:
            attempts.start()
            try:
                result = call()
            except (self._obs.exceptions.BaseError, OSError) as err:  # FileNotFoundError: 404
                error = _translate(err, operation, self.endpoint_url, attempts.retries)
            else:
                attempts.succeeded()
                return result, attempts.retries
            if isinstance(error, _NotPartial):
                raise error
            if isinstance(error, ClientError):
                status = int(error.response["ResponseMetadata"]["HTTPStatusCode"])
                wait = attempts.after_answer(status, str(error.response["Error"]["Code"]))
                if wait is None:
                    if attempts.gave_up_retrying:
                        error.response["ResponseMetadata"]["MaxAttemptsReached"] = True
                    raise error
            else:
                timeout = isinstance(error, (ReadTimeoutError, ConnectTimeoutError))
                wait = attempts.after_failure(cause(error), timeout=timeout)
                if wait is None:
                    raise error
            time.sleep(wait)


def plain(key: str) -> bool:
    """Whether object_store's ``Path`` names exactly ``key``: it refuses empty, ``.`` and ``..``
    segments and control characters, and drops a leading or trailing ``/`` (another key!). S3
    allows all of those; such keys go to the helper engine."""
    if not key or key.startswith("/") or key.endswith("/"):
        return False
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in key):
        return False
    return all(segment not in ("", ".", "..") for segment in key.split("/"))


def unusable() -> str | None:
    """Why obstore cannot make an HTTP client here, or None: its TLS (rustls) reads the system's
    CA certificates from ``SSL_CERT_FILE`` when that is set, even for an http endpoint, and
    refuses to start when that file holds none."""
    import os

    named = os.environ.get("SSL_CERT_FILE")
    if named and not os.path.isfile(named):
        return f"SSL_CERT_FILE names {named}, which is not a file"
    return None


def _roots(endpoint: str) -> bytes | None:
    """The CA bundle the environment names (``boto.ca_bundle``), read for an https endpoint:
    object_store takes the PEM, not a path, and adds it to the system's roots."""
    bundle = ca_bundle()
    if not bundle or urlsplit(endpoint).scheme != "https":
        return None
    try:
        with open(bundle, "rb") as fh:
            return fh.read()
    except OSError as err:
        raise OptionsError(
            f"the CA bundle {bundle} (SSL_CERT_FILE, AWS_CA_BUNDLE or REQUESTS_CA_BUNDLE) cannot "
            f"be read ({err.strerror}); point the variable at a readable PEM file"
        ) from err


class _Credentials:
    """obstore's credential provider: botocore's current credentials (refreshable ones refresh
    on their own), for a few minutes; object_store asks again before they expire."""

    def __init__(self, credentials: Any) -> None:
        self._credentials = credentials

    def __call__(self) -> dict[str, Any]:
        frozen = self._credentials.get_frozen_credentials()
        return {
            "access_key_id": frozen.access_key,
            "secret_access_key": frozen.secret_key,
            "token": frozen.token,
            "expires_at": datetime.now(UTC) + timedelta(minutes=10),
        }


class _NotPartial(Exception):
    """Internal: the store answered a ranged GET with the whole representation's 200."""


class _Body:
    """A GetObject body on obstore's stream: ``read(n)`` / ``close()``, errors as botocore's."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._left: bytes | memoryview = b""

    def read(self, amt: int | None = None, /) -> bytes | memoryview:
        """The next piece of the body: a view of obstore's buffer, not a copy (the caller
        writes and hashes it, both of which take any buffer)."""
        data = self._left
        while not data:
            try:
                chunk = next(self._stream)
            except StopIteration:
                return b""
            except Exception as err:  # noqa: BLE001 - obstore's errors, whatever their class
                raise ResponseStreamingError(error=err) from err
            data = memoryview(chunk)
        if amt is not None and len(data) > amt:
            data, self._left = data[:amt], data[amt:]
        else:
            self._left = b""
        return data

    def close(self) -> None:
        self._stream = iter(())  # dropped: object_store closes a connection left mid-body


def _metadata(status: int, retries: int) -> dict[str, Any]:
    return {"HTTPStatusCode": status, "HTTPHeaders": {}, "RetryAttempts": retries}


def _translate(err: Exception, operation: str, endpoint: str, retries: int) -> Exception:
    """obstore's error as the botocore exception the transfer code handles (module doc)."""
    text = str(err)
    if _NOT_PARTIAL in text:
        return _NotPartial(text)
    found = _STATUS.search(text)
    if found:
        status = int(found.group(1))
        code, message = wire.parse_error(_error_xml(text), status)
        if not message:
            message = text.split("\n\nDebug source:", 1)[0]
        return ClientError(
            {
                "Error": {"Code": code, "Message": message},
                "ResponseMetadata": _metadata(status, retries),
            },
            operation,
        )
    name = type(err).__name__
    if name in ("FileNotFoundError", "NotFoundError"):
        return _client_error(404, "NoSuchKey", "Not Found", operation, retries)
    if name in ("PreconditionError", "AlreadyExistsError"):
        return _client_error(412, "PreconditionFailed", "Precondition Failed", operation, retries)
    lowered = text.lower()
    summary = text.split("\n\nDebug source:", 1)[0]
    if "connection refused" in lowered:
        return EndpointConnectionError(
            endpoint_url=endpoint, error=ConnectionRefusedError(111, summary)
        )
    if "dns error" in lowered or "failed to lookup address" in lowered:
        return EndpointConnectionError(endpoint_url=endpoint, error=socket.gaierror(-2, summary))
    if "certificate" in lowered or "invalidcertificate" in lowered:
        cert = ssl.SSLCertVerificationError(1, summary)
        cert.verify_message = _certificate_reason(text)
        return SSLError(endpoint_url=endpoint, error=cert)
    if "timed out" in lowered or "timeout" in lowered:
        if "connect" in lowered:
            return ConnectTimeoutError(endpoint_url=endpoint, error=TimeoutError(summary))
        return ReadTimeoutError(endpoint_url=endpoint, error=TimeoutError(summary))
    return ConnectionClosedError(endpoint_url=endpoint, error=ConnectionError(summary))


def _client_error(
    status: int, code: str, message: str, operation: str, retries: int
) -> ClientError:
    meta = _metadata(status, retries)
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": meta}, operation
    )


def _error_xml(text: str) -> bytes:
    """The store's error document, which object_store quotes in its message."""
    start = text.find("<?xml")
    if start < 0:
        start = text.find("<Error")
    if start < 0:
        return b""
    end = text.find("</Error>", start)
    return text[start : end + len("</Error>")].encode() if end >= 0 else b""


def _certificate_reason(text: str) -> str:
    for reason in ("self-signed", "self signed", "UnknownIssuer", "expired", "NotValidForName"):
        if reason.lower() in text.lower():
            return reason
    return "certificate verify failed"
