"""The boto3 client of a store (every control call, presigning) and the boto3 engine."""

from __future__ import annotations

import base64
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from hook_processor._s3 import transfer
from hook_processor._s3.engine import Payload, S3Target, TransferSettings
from hook_processor.errors import OptionsError

_data_loader: Any = None
_UNREACHABLE_ID = "hook-processor-unreachable-retries"


def _botocore_session() -> Any:
    """A fresh botocore session (no credentials shared between clients) with a shared data loader.

    The loader caches botocore's parsed service models: every client after the first is created
    in ~10 ms instead of ~60 ms, which matters when one process runs many times (harness, tests).
    """
    import botocore.session

    global _data_loader
    session = botocore.session.Session()
    if _data_loader is None:
        _data_loader = session.get_component("data_loader")
    else:
        session.register_component("data_loader", _data_loader)
    return session


def client_for(target: S3Target, settings: TransferSettings, *, user_agent: str) -> tuple[Any, Any]:
    """The boto3 S3 client of ``target`` (sized for ``settings.concurrency`` threads, path-style
    addressing) and the credentials the engines sign with (None: none found).

    With an endpoint and both keys given (how the runtime always runs) the client is a
    :class:`LazyClient`: boto3 is imported and the client made at its first use (a HEAD, a
    multipart upload, a link), not before the first data request: that costs ~0.2 s of the
    start-up of ``exec`` (BENCHMARKS.md). Otherwise (AWS's endpoint, credentials from the
    environment's chain) botocore resolves them, and the client is made now.
    """
    if (target.access_key is None) != (target.secret_key is None):
        raise OptionsError(
            "S3 credentials: give both the access key and the secret key, or neither"
        )
    endpoint = target.endpoint_url or None
    if endpoint and _plain_endpoint(endpoint) and target.access_key and target.secret_key:
        keys = StaticCredentials(
            target.access_key.get_secret_value(), target.secret_key.get_secret_value()
        )
        client = LazyClient(
            lambda: _boto_client(target, settings, user_agent, keys)[0],
            endpoint_url=endpoint,
            region_name=target.region or "us-east-1",
        )
        return client, keys
    credentials: Any = None
    if target.access_key is not None and target.secret_key is not None:
        credentials = StaticCredentials(
            target.access_key.get_secret_value(), target.secret_key.get_secret_value()
        )
    made, session = _boto_client(target, settings, user_agent, credentials)
    if credentials is None:
        credentials = session.get_credentials()  # the environment's chain, as the client's
    return made, credentials


def _plain_endpoint(url: str) -> bool:
    """An ``http(s)://host[:port][/path]`` URL, which botocore takes as it is (others: botocore
    says what is wrong with them, when the client is made now)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not parts.query


class StaticCredentials:
    """Keys given as options (botocore's ``Credentials`` shape: ``get_frozen_credentials``),
    without importing botocore's credential chain."""

    __slots__ = ("access_key", "secret_key", "token")

    def __init__(self, access_key: str, secret_key: str, token: str | None = None) -> None:
        self.access_key = access_key
        self.secret_key = secret_key
        self.token = token

    def get_frozen_credentials(self) -> StaticCredentials:
        return self

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StaticCredentials) and (
            (self.access_key, self.secret_key, self.token)
            == (other.access_key, other.secret_key, other.token)
        )

    def __hash__(self) -> int:
        return hash((self.access_key, self.token))

    def __repr__(self) -> str:  # never the keys
        return "StaticCredentials(...)"


class LazyClient:
    """A boto3 client made at its first use; ``endpoint_url`` and ``region_name`` are known
    before (the engines need those, not the client, to send their first request)."""

    def __init__(self, make: Callable[[], Any], *, endpoint_url: str, region_name: str) -> None:
        self._make = make
        self._client: Any = None
        self._lock = threading.Lock()
        self.endpoint_url = endpoint_url
        self.region_name = region_name

    def real(self) -> Any:
        """The boto3 client (made now if it was not yet)."""
        with self._lock:
            if self._client is None:
                self._client = self._make()
            return self._client

    @property
    def made(self) -> bool:
        return self._client is not None

    def close(self) -> None:
        """Close the client's connections, if it was ever made."""
        if self._client is not None:
            self._client.close()

    def __getattr__(self, name: str) -> Any:
        if name in ("_make", "_client", "_lock"):  # before __init__ set them (copy, pickle)
            raise AttributeError(name)
        return getattr(self.real(), name)


def endpoint_of(client: Any) -> tuple[str, str]:
    """(endpoint URL, region) of a boto3 client or :class:`LazyClient`, without making it."""
    if isinstance(client, LazyClient):
        return client.endpoint_url, client.region_name
    return str(client.meta.endpoint_url), str(client.meta.region_name or "us-east-1")


def _boto_client(
    target: S3Target, settings: TransferSettings, user_agent: str, credentials: Any
) -> tuple[Any, Any]:
    """(boto3 client, its botocore session)."""
    import boto3  # lazy: importing boto3 costs ~0.15 s of start-up
    from botocore.config import Config

    region = target.region or "us-east-1"
    config = Config(
        region_name=region,
        max_pool_connections=max(1, settings.concurrency) + 4,
        # total_max_attempts counts the first try too (botocore's max_attempts counts retries).
        retries={"mode": "standard", "total_max_attempts": settings.max_attempts},
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        request_checksum_calculation=settings.checksum,
        response_checksum_validation=settings.checksum,
        s3={"addressing_style": "path"},
        # SigV4 for presigned links too: botocore presigns S3 with SigV2 unless told, which
        # SigV4-only stores (rclone serve s3, ...) refuse with 400 (see link.py).
        signature_version="s3v4",
        user_agent_extra=user_agent,
    )
    session = _botocore_session()
    try:
        client = boto3.session.Session(botocore_session=session).client(
            "s3",
            endpoint_url=target.endpoint_url or None,
            region_name=region,
            aws_access_key_id=credentials.access_key if credentials else None,
            aws_secret_access_key=credentials.secret_key if credentials else None,
            config=config,
            verify=ca_bundle(),
        )
    except ValueError as err:  # botocore: "Invalid endpoint: ..."
        raise OptionsError(f"S3 endpoint {target.endpoint_url!r} is not usable: {err}") from err
    client.meta.events.register_first(
        "needs-retry.s3",
        _unreachable_retries(settings.max_attempts, settings.throttle_seconds),
        unique_id=_UNREACHABLE_ID,
    )
    return client, session


def ca_bundle() -> str | None:
    """The CA bundle file the environment names, or None (botocore's default: certifi's).

    botocore reads ``AWS_CA_BUNDLE`` and ``REQUESTS_CA_BUNDLE`` but not ``SSL_CERT_FILE``, the
    variable OpenSSL and most other tools read: a platform that sets only that one (a private CA
    baked into the image) would get certificate errors. The first one set wins, in that order.
    """
    for name in ("AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        value = os.environ.get(name)
        if value:
            return value
    return None


def _unreachable_retries(max_attempts: int, throttle_seconds: float) -> Callable[..., float | None]:
    """A botocore ``needs-retry`` handler: few, quick attempts for a refused connection or an
    unknown host (see ``transfer.UNREACHABLE_ATTEMPTS``), none for a certificate that does not
    verify, and a time budget (``throttle_seconds``) for throttling answers (see
    ``transfer.THROTTLING_CODES``); every other case is left to the standard retry policy (None).

    botocore retries with the first delay any handler returns and has no "do not retry" answer,
    so the last attempt re-raises the error itself, as botocore would once it gives up.
    """
    limit = max(1, min(max_attempts, transfer.UNREACHABLE_ATTEMPTS))

    def needs_retry(
        attempts: int = 1,
        caught_exception: BaseException | None = None,
        response: Any = None,
        request_dict: Any = None,
        **_: Any,
    ) -> float | None:
        if caught_exception is None:
            return _throttled_retry(attempts, response, request_dict, throttle_seconds)
        kind = transfer.cause(caught_exception)
        if kind == "certificate":  # the next attempt gets the same certificate: say it now
            raise caught_exception
        if kind not in ("refused", "unresolved"):
            return None
        if attempts >= limit:
            raise caught_exception
        return transfer.unreachable_delay(attempts)

    return needs_retry


def _throttled_retry(
    attempts: int, response: Any, request_dict: Any, window: float
) -> float | None:
    """The wait before retrying a throttled answer, within ``window`` seconds of throttling of
    this request (its start is kept in the request's context, which every attempt shares)."""
    if not response or not isinstance(request_dict, dict):
        return None
    http, parsed = response
    status = int(getattr(http, "status_code", 0) or 0)
    code = str((parsed or {}).get("Error", {}).get("Code", ""))
    if not transfer.throttled(status, code):
        return None
    context = request_dict.setdefault("context", {})
    since = context.setdefault("hook_throttled_since", time.monotonic())
    return transfer.throttle_wait(since, attempts, window)


class BotoPresign:
    """Presigning on the boto3 client: every engine's (a TEMPORARY run's link, link.py)."""

    boto: Any  # the boto3 client of the store

    def generate_presigned_url(
        self,
        ClientMethod: str,  # noqa: N803
        Params: dict[str, Any],  # noqa: N803
        ExpiresIn: int = 3600,  # noqa: N803
    ) -> str:
        return str(self.boto.generate_presigned_url(ClientMethod, Params, ExpiresIn))


class BotoControl(BotoPresign):
    """The control calls on the boto3 client: HEAD, DELETE, multipart bookkeeping, presigning.

    The boto3 engine's; the lean engine has its own but presigning (lean_control.py), and obstore
    sends them through its helper.
    """

    def head_object(self, **params: Any) -> dict[str, Any]:
        return dict(self.boto.head_object(**params))

    def head_bucket(self, **params: Any) -> dict[str, Any]:
        return dict(self.boto.head_bucket(**params))

    def delete_object(self, **params: Any) -> dict[str, Any]:
        return dict(self.boto.delete_object(**params))

    def create_multipart_upload(self, **params: Any) -> dict[str, Any]:
        return dict(self.boto.create_multipart_upload(**params))

    def complete_multipart_upload(self, **params: Any) -> dict[str, Any]:
        return dict(self.boto.complete_multipart_upload(**params))

    def abort_multipart_upload(self, **params: Any) -> dict[str, Any]:
        return dict(self.boto.abort_multipart_upload(**params))


class BotoEngine(BotoControl):
    """Every call on the boto3 client (its event hooks, retries and checksums)."""

    name = "boto3"
    choice = "HOOK_S3_ENGINE"

    def __init__(self, client: Any) -> None:
        self.boto = client
        self.endpoint_url = str(client.meta.endpoint_url)
        config = client.meta.config
        self._crc32 = getattr(config, "request_checksum_calculation", None) != "when_required"

    def list_objects_v2(self, **params: Any) -> dict[str, Any]:
        return dict(self.boto.list_objects_v2(**params))

    def get_object(self, **params: Any) -> dict[str, Any]:
        return dict(self.boto.get_object(**_given(params)))

    def put_object(self, *, Body: Payload, **params: Any) -> dict[str, Any]:  # noqa: N803
        return dict(
            self.boto.put_object(
                Body=Body.data, ContentMD5=Body.content_md5(), **self._sums(Body), **_given(params)
            )
        )

    def upload_part(self, *, Body: Payload, **params: Any) -> dict[str, Any]:  # noqa: N803
        return dict(
            self.boto.upload_part(
                Body=Body.data, ContentMD5=Body.content_md5(), **self._sums(Body), **params
            )
        )

    def _sums(self, body: Payload) -> dict[str, str]:
        """The body's CRC32, given as a header value of our own.

        Left to botocore, an upload over https carries its checksum in an aws-chunked *trailer*:
        the body goes with ``Transfer-Encoding: chunked`` and no ``Content-Length``, which stores
        such as ``rclone serve s3`` refuse (411 MissingContentLength). A checksum given as a
        parameter is sent as a header, and the body (bytes) with its length, on http and https.
        """
        if not self._crc32:
            return {}
        return {"ChecksumCRC32": base64.b64encode(body.crc32().to_bytes(4, "big")).decode()}

    def close(self) -> None:
        self.boto.close()


def _given(params: dict[str, Any]) -> dict[str, Any]:
    """The parameters that have a value (boto3 refuses None for an optional one)."""
    return {k: v for k, v in params.items() if v is not None}
