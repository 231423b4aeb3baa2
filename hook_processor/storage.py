"""S3 transfers of the runtime: parallel stage-in, publication (PRIVATE / TEMPORARY), safe paths.

* :func:`stage_in` lists once, refuses hostile keys before writing anything, downloads on a pool
  of ``settings.concurrency`` threads (large objects as ranged GETs; every GET pinned with
  ``If-Match`` to the listed ETag) into temporary files renamed into place after a size check.
* :func:`publish_private` uploads output_dir file by file (large files as multipart uploads),
  verifies each, then writes ``<prefix>/_manifest.json`` LAST with ``If-None-Match: *``. A
  prefix that already has a manifest is refused: two runs are never mixed.
* :func:`publish_temporary` streams output_dir as one zip straight into a multipart upload and
  returns a presigned download link.

Internals live in the ``_s3`` sub-package: ``engine.py`` (the interface and the engine choice,
``HOOK_S3_ENGINE``), ``transfer.py`` (pool, errors), ``download.py`` and ``upload.py``.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import datetime
import io
import threading
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from hook_processor import _jsonstream
from hook_processor._progress import Progress
from hook_processor._s3 import transfer as _transfer
from hook_processor._s3.engine import Engine, Payload, S3Target, TransferSettings
from hook_processor._s3url import parse_s3_url
from hook_processor.errors import PublishError, StagingError

if TYPE_CHECKING:
    from hook_processor.options import PlatformSettings

__all__ = [
    "DOWNLOAD_LINK_SECONDS",
    "MANIFEST_NAME",
    "Engine",
    "Product",
    "PublishOutcome",
    "S3Target",
    "TransferSettings",
    "TransferStats",
    "make_client",
    "parse_s3_url",
    "publish_private",
    "publish_temporary",
    "stage_in",
]

MANIFEST_NAME = "_manifest.json"
DOWNLOAD_LINK_SECONDS = 14 * 24 * 3600


@dataclasses.dataclass
class TransferStats:
    files: int = 0
    bytes: int = 0
    retries: int = 0


@dataclasses.dataclass(frozen=True, slots=True)  # slots: one per file, 100,000 of them
class Product:
    name: str
    size: int
    location: str | None = None  # s3://bucket/key (PRIVATE)
    download_link: str | None = None  # presigned URL (TEMPORARY)
    sha256: str | None = None


class _Products(Sequence[Product]):
    """The products of a PRIVATE publication, one :class:`Product` made per access from the
    walk and the uploads' results (a Product per file held ~270 bytes a file more)."""

    def __init__(self, files: Sequence[Any], url: str, results: Any) -> None:
        self._files, self._url, self._results = files, url, results

    def __len__(self) -> int:
        return len(self._files)

    @overload
    def __getitem__(self, index: int) -> Product: ...
    @overload
    def __getitem__(self, index: slice) -> list[Product]: ...
    def __getitem__(self, index: int | slice) -> Product | list[Product]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        f = self._files[index]
        sha256 = self._results.sha256(index)
        return Product(f.rel, f.size, location=self._url + f.rel, sha256=sha256)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]


@dataclasses.dataclass
class PublishOutcome:
    products: Sequence[Product]
    stats: TransferStats
    manifest: str | None = None  # s3:// URL of the manifest (PRIVATE)


def transfer_settings(platform: PlatformSettings) -> TransferSettings:
    """The transfers' settings from the platform's (``HOOK_CONCURRENCY``, ``HOOK_S3_*``, ...)."""
    part_size = platform.part_size_mb * 1024 * 1024
    return TransferSettings(
        concurrency=platform.concurrency,
        part_size=part_size,
        multipart_threshold=2 * part_size,
        max_attempts=platform.s3_max_attempts,
        throttle_seconds=platform.s3_throttle_seconds,
        checksum=platform.s3_checksum,
        engine=platform.s3_engine,
        max_ranges=platform.download_ranges,
    )


def make_client(target: S3Target, settings: TransferSettings) -> Engine:
    """The S3 engine ``settings.engine`` names (``lean``, ``boto3`` or ``obstore``) for ``target``.

    Its ``boto`` attribute is the boto3 client of the same store (path-style addressing,
    standard retries, sized for ``settings.concurrency`` threads) for any other call.
    """
    from hook_processor import __version__
    from hook_processor._s3 import engine

    return engine.create(target, settings, user_agent=f"hook-processor/{__version__}")


def stage_in(
    client: Engine,
    bucket: str,
    key_or_prefix: str,
    dest: Path,
    settings: TransferSettings,
    *,
    cancel: threading.Event | None = None,
    progress: Progress | None = None,
    before_download: Callable[[], None] | None = None,
) -> TransferStats:
    """Download ``s3://bucket/key_or_prefix`` into ``dest``.

    ``before_download`` is called once the input is listed and checked, before any byte moves
    (the runtime checks the output side there).

    ``""`` or a value ending in ``/`` is a prefix (every object under it). Otherwise a folder if
    objects exist under ``key_or_prefix + "/"``, else the one object of that exact key (staged as
    ``dest/<basename>``). Raises StagingError (nothing found, hostile key, S3 or disk failure) or
    Cancelled; either way no temporary file and no partial file is left behind.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    from hook_processor._s3 import download as _download

    job = _transfer.Job(
        client,
        bucket,
        settings,
        error=StagingError,
        phase="staging the input",
        cancel=cancel,
        progress=progress,
    )
    try:
        listing = _download.list_objects(job, key_or_prefix)
    except (ClientError, BotoCoreError) as err:
        raise job.fail(f"could not list {job.url(key_or_prefix)}", err) from err
    remotes = _download.plan(job, listing, key_or_prefix)
    if before_download is not None:
        before_download()
    total = remotes.total_size()
    job.planned(len(remotes), total)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise job.fail(f"could not create the input folder {dest}", err) from err
    temps = _download.TempFiles(dest)
    try:
        job.run(_download.units(job, remotes, temps))
    finally:
        temps.cleanup()
    return TransferStats(files=len(remotes), bytes=total, retries=job.retries)


def _publish_job(
    client: Engine,
    bucket: str,
    settings: TransferSettings,
    cancel: threading.Event | None,
    progress: Progress | None,
) -> _transfer.Job:
    return _transfer.Job(
        client,
        bucket,
        settings,
        error=PublishError,
        phase="publishing the output",
        cancel=cancel,
        progress=progress,
    )


def claim_output(
    client: Engine,
    bucket: str,
    prefix: str,
    settings: TransferSettings,
    *,
    order_id: str | None,
    digest: str,
    own_input: tuple[str, str] | None = None,
    cancel: threading.Event | None = None,
) -> Any:
    """The output preflight and the claim on ``prefix`` (see ``_s3/claim.py``): run it before
    stage-in; pass the claim to :func:`publish_private`; ``release()`` it when done."""
    from hook_processor._s3 import claim as _claim

    job = _publish_job(client, bucket, settings, cancel, None)
    job.phase = "checking the output"
    return _claim.preflight(
        job, prefix, _claim.Order(order_id or None, digest), own_input=own_input
    )


def publish_private(
    client: Engine,
    bucket: str,
    prefix: str,
    src: Path,
    settings: TransferSettings,
    *,
    manifest_extra: Mapping[str, Any],
    cancel: threading.Event | None = None,
    progress: Progress | None = None,
    claim: Any = None,
) -> PublishOutcome:
    """Upload every file of ``src`` to ``s3://bucket/prefix/<relative path>``, manifest last.

    Refuses a prefix that already holds a manifest (a previous run's), before uploading
    anything. A failed or cancelled run aborts its multipart uploads and writes no manifest.
    With the ``claim`` of :func:`claim_output` (the runtime's), no file may replace a protected
    object, and every object under the prefix is checked to be this run's before the manifest.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    from hook_processor._s3 import upload as _upload
    from hook_processor._s3 import walk as _walk

    job = _publish_job(client, bucket, settings, cancel, progress)
    prefix = prefix.rstrip("/")
    files = _walk.walk(src)
    job.planned(len(files), sum(f.size for f in files))
    if any(f.rel == MANIFEST_NAME for f in files):
        raise PublishError(
            f"the output folder {src} contains {MANIFEST_NAME}, a name hook-processor reserves "
            "for the manifest it writes; rename that file"
        )
    manifest_key = f"{prefix}/{MANIFEST_NAME}" if prefix else MANIFEST_NAME
    job.check()
    if claim is not None:
        # The claim keeps its own job: the runtime counts the claim's requests (this
        # verification, the release) from that job, and this phase's from this one.
        claim.refuse_protected(f"{prefix}/{f.rel}" if prefix else f.rel for f in files)
        exists = False
    else:
        try:
            exists = _upload.head_exists(job, manifest_key)
        except (ClientError, BotoCoreError) as err:
            raise job.fail(f"could not check for {job.url(manifest_key)}", err) from err
    if exists:
        raise PublishError(
            f"{job.url(manifest_key)} already exists: a previous run published to "
            f"{job.url(prefix)}; choose another s3_prefix or delete that run's objects first "
            "(hook-processor never mixes the outputs of two runs)"
        )
    results = _upload.Results(len(files))
    multiparts: list[_upload._Multipart] = []
    units = _upload.private_units(job, src, files, prefix, results, multiparts)
    try:
        job.run(units)
    except BaseException:
        for mp in multiparts:
            mp.abort(job)
        raise
    job.check()
    _walk.check_unchanged(src, files)  # nothing written since the walk: the set is one version
    files.release_paths()  # the manifest and the products need the relative paths and sizes

    def key_of(local: _walk.Local) -> str:
        return f"{prefix}/{local.rel}" if prefix else local.rel

    if claim is not None:
        try:
            claim.verify(_Written(files, prefix, results))
        except (ClientError, BotoCoreError) as err:
            raise job.fail(f"could not list {job.url(prefix)} to verify it", err) from err
    manifest = {
        "hook_processor_version": _version(),
        "created": _now(),
        "files": _jsonstream.Lazy(
            len(files),
            lambda: (
                {"key": key_of(f), "size": f.size, "sha256": results.sha256(i)}
                for i, f in enumerate(files)
            ),
        ),
        **manifest_extra,
    }
    body = _json_bytes(manifest)
    try:
        job.call(
            client.put_object,
            Bucket=bucket,
            Key=manifest_key,
            Body=Payload(data=body),
            IfNoneMatch="*",
            ContentType="application/json",
        )
    except ClientError as err:
        if _transfer.http_status(err) in (409, 412):
            raise PublishError(
                f"{job.url(manifest_key)} was written by another run while this one uploaded; "
                "choose another s3_prefix"
            ) from err
        raise job.fail(f"could not write {job.url(manifest_key)}", err) from err
    except BotoCoreError as err:
        raise job.fail(f"could not write {job.url(manifest_key)}", err) from err
    products = _Products(files, job.url(f"{prefix}/" if prefix else ""), results)
    stats = TransferStats(files=len(files), bytes=sum(f.size for f in files), retries=job.retries)
    return PublishOutcome(products, stats, manifest=job.url(manifest_key))


def publish_temporary(
    client: Engine,
    bucket: str,
    key: str,
    src: Path,
    settings: TransferSettings,
    *,
    expires_in: int = DOWNLOAD_LINK_SECONDS,
    verify_link: bool = True,
    cancel: threading.Event | None = None,
    progress: Progress | None = None,
) -> PublishOutcome:
    """Stream ``src`` as one zip to ``s3://bucket/key`` and return a presigned download link.

    The link is SigV4; ``verify_link``: one ranged GET of it must work, else PublishError with
    the HTTP status (validity and AWS's 7-day cap: see ``_s3/link.py``).

    The zip is never written to local disk; at most a few parts are held in memory. On failure
    or cancel the multipart upload is aborted.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    from hook_processor._s3 import upload as _upload
    from hook_processor._s3 import walk as _walk

    job = _publish_job(client, bucket, settings, cancel, progress)
    files = _walk.walk(src)
    # Progress counts the files' bytes as they go into the zip (its compressed size is not
    # known in advance); the upload trails them by at most ``inflight`` parts.
    job.planned(len(files), sum(f.size for f in files))
    inflight = max(1, min(settings.concurrency, 4))
    sink = _upload.MultipartSink(job, key, _transfer.part_size_for(0, settings.part_size), inflight)
    archive: zipfile.ZipFile | None = None
    try:
        archive = zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED, strict_timestamps=False)
        for f in files:
            job.check()
            try:
                _upload.add_to_zip(job, archive, f)
            except OSError as err:
                raise PublishError(
                    f"could not add {src / f.rel} to the zip: {_transfer.describe(err)}"
                ) from err
        archive.close()
        sink.finish()
        _upload.verify_size(job, key, sink.size)
    except BaseException as err:
        sink.abort()
        if archive is not None:
            with contextlib.suppress(Exception):  # best effort
                archive.close()  # writes into the discarding sink; keeps __del__ quiet
        if isinstance(err, ClientError | BotoCoreError):
            raise job.fail(f"could not upload the zip to {job.url(key)}", err) from err
        if isinstance(err, _transfer.Aborted):
            raise job.error(f"the upload of {job.url(key)} stopped") from err
        raise
    from hook_processor._s3 import link as _link

    try:
        link, _ = _link.download_link(client, bucket, key, expires_in, verify=verify_link)
    except (ClientError, BotoCoreError) as err:
        raise job.fail(f"could not create a download link for {job.url(key)}", err) from err
    product = Product(
        name=key.rsplit("/", 1)[-1],
        size=sink.size,
        location=job.url(key),
        download_link=link,
        sha256=sink.sha256.hexdigest(),
    )
    stats = TransferStats(files=len(files), bytes=sink.size, retries=job.retries)
    return PublishOutcome([product], stats)


def _version() -> str:
    from hook_processor import __version__ as version

    return version


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Written(Mapping[str, tuple[int, str]]):
    """key -> (size, ETag) of what this publication uploaded, for the claim's verification,
    looked up in the walk (sorted by relative path) instead of copied into a dict."""

    def __init__(self, files: Sequence[Any], prefix: str, results: Any) -> None:
        self._files, self._results = files, results
        self._cut = len(prefix) + 1 if prefix else 0
        self._prefix = f"{prefix}/" if prefix else ""

    def __getitem__(self, key: str) -> tuple[int, str]:
        if not key.startswith(self._prefix):
            raise KeyError(key)
        rel = key[self._cut :]
        at = bisect.bisect_left(self._files, rel, key=lambda f: f.rel)
        if at == len(self._files) or self._files[at].rel != rel:
            raise KeyError(key)
        return self._files[at].size, self._results.etag(at)

    def __iter__(self) -> Iterator[str]:
        return (self._prefix + f.rel for f in self._files)

    def __len__(self) -> int:
        return len(self._files)


def _json_bytes(document: Mapping[str, Any]) -> bytes:
    """``json.dumps(document, indent=2, ensure_ascii=False)`` in UTF-8, encoded piece by piece
    (``_jsonstream``): a :class:`~hook_processor._jsonstream.Lazy` value's entries are made as
    they are encoded."""
    out = io.BytesIO()
    for piece in _jsonstream.pieces(document):
        out.write(piece.encode("utf-8"))
    return out.getvalue()
