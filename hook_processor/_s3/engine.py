"""The one interface the transfer code calls, the settings of a client, and the engine choice.

An :class:`Engine` speaks boto3's calling convention (keyword parameters named as in the S3 API,
response dicts with ``ResponseMetadata``) and raises botocore's exception types, whichever
engine it is, so that stage-in and publication have one code path:

* ``auto`` (default): ``obstore`` (the fastest that passes the reliability matrix, BENCHMARKS.md);
  where obstore is not installed or cannot start (``SSL_CERT_FILE`` naming no file: its TLS reads
  it), ``lean``, or ``boto3`` for an endpoint the environment sends
  through an HTTP proxy (the lean engine does not speak through proxies). The choice and its
  reason are logged once per run;
* ``obstore``: GetObject and PutObject on obstore (Rust object_store), through the environment's
  HTTP proxy if one applies; ListObjectsV2 and UploadPart on the lean engine (the boto3 one
  behind a proxy); HEAD, multipart bookkeeping and presigning on the boto3 client
  (``obstore_engine.py``);
* ``lean``: ListObjectsV2, GetObject, PutObject and UploadPart signed by hand on one
  urllib3 pool (``lean.py``); HEAD, multipart bookkeeping and presigning on its boto3 client;
* ``boto3``: every call on the boto3 client (``boto.py``).

Every PutObject and UploadPart of the lean and boto3 engines carries ``Content-MD5``, which every
S3 store verifies (also with ``HOOK_S3_CHECKSUM=when_required``, for stores that reject the
flexible ``x-amz-checksum-*`` headers); the lean engine also signs the real SHA-256 of the body,
and both add CRC32 with ``when_supported``. The obstore engine's PutObject signs the real SHA-256
(adds ``x-amz-checksum-sha256`` with ``when_supported``) and checks the store's ETag against the
body's MD5; its UploadParts are the lean (or boto3) engine's. No upload travels unchecked.

The engine is chosen once, by :func:`create` from ``TransferSettings.engine``
(``HOOK_S3_ENGINE``), and never changes afterwards: hooking the boto3 client's events does not
turn the lean or obstore engine off, and a client handed in is used as it is.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import zlib
from collections.abc import Mapping
from typing import Any, Protocol

from pydantic import SecretStr

ENGINES = ("auto", "lean", "boto3", "obstore")
SEND_BLOCK = 1024 * 1024  # bytes handed to the socket at a time


@dataclasses.dataclass(frozen=True)
class S3Target:
    """Where and how to reach one S3 store."""

    endpoint_url: str | None
    access_key: SecretStr | None
    secret_key: SecretStr | None
    region: str | None = None


@dataclasses.dataclass(frozen=True)
class TransferSettings:
    concurrency: int = 16
    part_size: int = 8 * 1024 * 1024
    multipart_threshold: int = 16 * 1024 * 1024
    max_attempts: int = 5
    throttle_seconds: float = 60.0  # a request's retry window for throttling (transfer.py)
    checksum: str = "when_supported"  # or "when_required"
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    engine: str = "auto"  # or "lean", "boto3", "obstore" (ENGINES)
    max_ranges: int = 0  # ranged GETs per large object at most (0: one per part_size)


class Payload:
    """The body of one PutObject or UploadPart, in memory: the bytes read once from the file.

    Each digest is computed on first use and kept, so that a body is hashed only with what its
    request and its caller need (MD5 costs 1.45 s of a core per GiB here, SHA-256 0.61 s, CRC32
    0.35 s: BENCHMARKS.md), and never twice.
    """

    __slots__ = ("_crc32", "_md5", "_sha256", "data")

    def __init__(self, *, data: bytes) -> None:
        self.data = data
        self._md5: str | None = None
        self._sha256: str | None = None
        self._crc32: int | None = None

    def __len__(self) -> int:
        return len(self.data)

    def md5(self) -> str:
        """The body's MD5, hex (what a single-part ETag is)."""
        if self._md5 is None:
            self._md5 = hashlib.md5(self.data, usedforsecurity=False).hexdigest()
        return self._md5

    def sha256(self) -> str:
        """The body's SHA-256, hex (SigV4's signed payload hash)."""
        if self._sha256 is None:
            self._sha256 = hashlib.sha256(self.data).hexdigest()
        return self._sha256

    def crc32(self) -> int:
        if self._crc32 is None:
            self._crc32 = zlib.crc32(self.data)
        return self._crc32

    def content_md5(self) -> str:
        """The Content-MD5 header: every store verifies it (BadDigest), whatever its checksums."""
        return base64.b64encode(bytes.fromhex(self.md5())).decode()


class Body(Protocol):
    """A GetObject body: ``read(n)`` until b"", then ``close()``."""

    def read(self, amt: int | None = None, /) -> bytes | memoryview: ...

    def close(self) -> None: ...


class Engine(Protocol):
    """The S3 calls of stage-in and publication (boto3's names and calling convention)."""

    name: str  # "obstore", "lean" or "boto3"
    choice: str  # how it was chosen: "HOOK_S3_ENGINE", or "auto" and why (logged once per run)
    endpoint_url: str
    boto: Any  # the boto3 client of the same store, for anything else (harness, tests)

    def list_objects_v2(
        self,
        *,
        Bucket: str,  # noqa: N803 - boto3's parameter names
        Prefix: str = "",  # noqa: N803
        ContinuationToken: str | None = None,  # noqa: N803
    ) -> dict[str, Any]:
        """One page: Contents (Key, Size, ETag), IsTruncated, NextContinuationToken."""

    def get_object(
        self,
        *,
        Bucket: str,  # noqa: N803
        Key: str,  # noqa: N803
        Range: str | None = None,  # noqa: N803
        IfMatch: str | None = None,  # noqa: N803
    ) -> dict[str, Any]:
        """Body (a :class:`Body`), ContentLength, ETag."""

    def head_object(
        self,
        *,
        Bucket: str,  # noqa: N803
        Key: str,  # noqa: N803
        IfMatch: str | None = None,  # noqa: N803
        ChecksumMode: str | None = None,  # noqa: N803
    ) -> dict[str, Any]:
        """ContentLength, ETag, the SSE and checksum fields, Metadata."""

    def head_bucket(self, *, Bucket: str) -> dict[str, Any]: ...  # noqa: N803

    def delete_object(self, *, Bucket: str, Key: str) -> dict[str, Any]: ...  # noqa: N803

    def put_object(
        self,
        *,
        Bucket: str,  # noqa: N803
        Key: str,  # noqa: N803
        Body: Payload,  # noqa: N803
        IfNoneMatch: str | None = None,  # noqa: N803
        ContentType: str | None = None,  # noqa: N803
    ) -> dict[str, Any]:
        """ETag; ``IfNoneMatch="*"``: 412 (a ClientError) if the key exists."""

    def create_multipart_upload(self, *, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803
        """UploadId."""

    def upload_part(
        self,
        *,
        Bucket: str,  # noqa: N803
        Key: str,  # noqa: N803
        UploadId: str,  # noqa: N803
        PartNumber: int,  # noqa: N803
        Body: Payload,  # noqa: N803
    ) -> dict[str, Any]:
        """ETag."""

    def complete_multipart_upload(
        self,
        *,
        Bucket: str,  # noqa: N803
        Key: str,  # noqa: N803
        UploadId: str,  # noqa: N803
        MultipartUpload: Mapping[str, Any],  # noqa: N803
    ) -> dict[str, Any]: ...

    def abort_multipart_upload(
        self,
        *,
        Bucket: str,  # noqa: N803
        Key: str,  # noqa: N803
        UploadId: str,  # noqa: N803
    ) -> dict[str, Any]: ...

    def generate_presigned_url(
        self,
        ClientMethod: str,  # noqa: N803
        Params: dict[str, Any],  # noqa: N803
        ExpiresIn: int = 3600,  # noqa: N803
    ) -> str: ...

    def close(self) -> None:
        """Close the connections (the boto3 client's too)."""


def create(target: S3Target, settings: TransferSettings, *, user_agent: str) -> Engine:
    """The engine ``settings.engine`` names, for ``target``; OptionsError if it cannot be."""
    from hook_processor._s3 import boto
    from hook_processor.errors import OptionsError

    if settings.engine not in ENGINES:
        raise OptionsError(
            f"HOOK_S3_ENGINE: {settings.engine!r} is not an S3 engine; use one of "
            f"{', '.join(ENGINES)}"
        )
    from hook_processor._s3 import lean

    client, credentials = boto.client_for(target, settings, user_agent=user_agent)
    if settings.engine == "auto":
        import importlib.util

        if importlib.util.find_spec("obstore") is None:
            why = "obstore is not installed"
        else:
            from hook_processor._s3.obstore_engine import unusable

            why = unusable() or ""
        if not why:
            engine: Engine = _obstore(client, credentials, settings, user_agent)
            engine.choice = "auto"
            return engine
        proxy = lean.proxy_for(boto.endpoint_of(client)[0])
        if proxy:
            engine = boto.BotoEngine(client)
            engine.choice = (
                f"auto: {why}, {proxy.upper()}_PROXY applies to the endpoint, and the lean "
                "engine does not go through proxies"
            )
            return engine
        engine = lean.LeanEngine(client, credentials, settings, user_agent=user_agent)
        engine.choice = f"auto: {why}"
        return engine
    if settings.engine == "boto3":
        return boto.BotoEngine(client)
    if settings.engine == "obstore":
        return _obstore(client, credentials, settings, user_agent)
    return lean.LeanEngine(client, credentials, settings, user_agent=user_agent)


def _obstore(client: Any, credentials: Any, settings: TransferSettings, user_agent: str) -> Engine:
    """The obstore engine, through the proxy the environment applies to the endpoint (if any:
    ``HTTP(S)_PROXY`` without a ``NO_PROXY`` match, read as botocore reads them)."""
    import urllib.request

    from hook_processor._s3 import boto, lean, obstore_engine

    scheme = lean.proxy_for(boto.endpoint_of(client)[0])
    proxy = urllib.request.getproxies().get(scheme) if scheme else None
    # What obstore cannot do (listing pages, UploadPart, 200-answered ranges) goes to the lean
    # engine, or to the boto3 one through a proxy (obstore_engine.py).
    helper: Engine = (
        boto.BotoEngine(client)
        if proxy
        else lean.LeanEngine(client, credentials, settings, user_agent=user_agent)
    )
    return obstore_engine.ObstoreEngine(
        client, credentials, settings, user_agent=user_agent, proxy=proxy, helper=helper
    )
