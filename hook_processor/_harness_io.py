"""Files of the local harness: inputs to upload, the output folder, downloads of what was published.

Internal to :mod:`hook_processor.harness`. Library code: raises :class:`OptionsError` (a problem
with the harness's own arguments, found before anything starts) or :class:`StagingError` /
:class:`PublishError` for S3 failures of the harness's own transfers; never prints.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ipaddress
import json
import shutil
import threading
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from hook_processor._progress import Progress
from hook_processor.errors import OptionsError, PublishError, StagingError

MARKER = ".hook-processor-run.json"  # in the output folder: the run's result JSON
InputFile = tuple[str, Path | bytes]  # (relative posix path, local file or content)


def safe_relative(name: str, what: str) -> str:
    """A relative posix path that stays inside its folder, or OptionsError."""
    path = PurePosixPath(name.replace("\\", "/"))
    if (
        not name
        or path.is_absolute()
        or any(p in ("..", "") for p in path.parts)
        or str(path) == "."
    ):
        raise OptionsError(f"{what} {name!r}: must be a relative path inside the folder (no '..')")
    return str(path)


def collect_inputs(
    inputs: Sequence[Path] | Mapping[str, bytes], what: str = "--input"
) -> list[InputFile]:
    """Every input file with the key it gets under the input prefix; checks before any I/O.

    A file keeps its basename, a folder gives its contents (recursively); several inputs are
    merged, and two files that would get the same name are refused. ``what`` names the inputs
    in messages (the CLI's ``--input``, the pytest plugin's ``run_processor(inputs=...)``).
    """
    if isinstance(inputs, Mapping):
        files: list[InputFile] = []
        for name, data in inputs.items():
            if not isinstance(data, bytes | bytearray | str):
                raise OptionsError(f"{what} {name!r}: content must be bytes or str")
            content = data.encode("utf-8") if isinstance(data, str) else bytes(data)
            files.append((safe_relative(str(name), "input"), content))
        return files
    found: dict[str, tuple[Path, Path]] = {}
    for given in inputs:
        given = Path(given)
        if given.is_file():
            pairs = [(given.name, given)]
        elif given.is_dir():
            pairs = [
                (p.relative_to(given).as_posix(), p)
                for p in sorted(given.rglob("*"))
                if p.is_file()
            ]
        else:
            raise OptionsError(f"{what} {given}: no such file or folder")
        for rel, path in pairs:
            if rel in found:
                raise OptionsError(
                    f"{what}: two inputs give the file {rel!r} ({found[rel][1]} and {path}); "
                    "rename one, or give their folders separately so that names differ"
                )
            found[rel] = (given, path)
    return [(rel, path) for rel, (_, path) in found.items()]


def no_inputs(inputs: Sequence[Path] | Mapping[str, bytes], what: str = "--input") -> str:
    """Why there is nothing to upload, in words that fit what was given (nothing, empty folders)."""
    if isinstance(inputs, Mapping):
        return (
            f"{what}: no input files; give at least one, e.g. inputs={{'example.data': b'hello'}} "
            "or the path of a sample folder (a run stages its input as the Hook service does)"
        )
    folders = [Path(p) for p in inputs]
    if not folders:
        return f"{what}: give the files or folders to process (the embedded S3 server starts empty)"
    shown = ", ".join(str(p) for p in folders)
    return (
        f"{what} {shown}: the folder holds no files{'' if len(folders) == 1 else ' (any of them)'}"
        "; put the files to process in it (a run stages its input as the Hook service does)"
    )


def prepare_output_dir(output_dir: Path) -> Path:
    """An empty folder for this run's outputs; a previous ``run``'s outputs are replaced.

    A folder holding files that ``hook-processor run`` did not put there is refused.
    """
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise OptionsError(f"--output {output_dir}: exists and is not a folder")
    if output_dir.is_dir() and any(output_dir.iterdir()):
        marker = output_dir / MARKER
        if not marker.is_file():
            raise OptionsError(
                f"--output {output_dir}: the folder already holds files that hook-processor run "
                "did not write; give an empty or new folder"
            )
        # The marker is written last: anything changed after it is the user's, never deleted.
        written = marker.stat().st_mtime
        later = sorted(
            p.relative_to(output_dir).as_posix()
            for p in output_dir.rglob("*")
            if p != marker and (p.is_symlink() or not p.is_dir()) and p.lstat().st_mtime > written
        )
        if later:
            raise OptionsError(
                f"--output {output_dir}: {', '.join(later[:3])}{' ...' if len(later) > 3 else ''}"
                " changed after the last run: hook-processor run did not write it; move it away "
                "or give an empty or new folder"
            )
        for child in output_dir.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    output_dir.mkdir(parents=True, exist_ok=True)
    return output_dir.resolve()


def write_marker(output_dir: Path, result: Mapping[str, Any]) -> None:
    (output_dir / MARKER).write_text(
        json.dumps(result, indent=2, ensure_ascii=False) + "\n", "utf-8"
    )


def upload_inputs(
    client: Any,
    bucket: str,
    prefix: str,
    files: list[InputFile],
    endpoint: str,
    progress: Progress | None = None,
) -> int:
    """Upload the inputs to ``s3://bucket/prefix<rel>``; returns the bytes uploaded.

    Interrupted (KeyboardInterrupt in the calling thread), every upload stops at its next chunk
    and a multipart upload is aborted (boto3 does that when its callback raises).
    """
    from botocore.exceptions import BotoCoreError, ClientError

    stop = threading.Event()

    def sent(nbytes: int) -> None:
        if stop.is_set():
            raise _Stopped
        if progress:
            progress(nbytes)

    def one(item: InputFile) -> int:
        rel, source = item
        key = prefix + rel
        if stop.is_set():
            raise _Stopped
        try:
            if isinstance(source, bytes):
                client.put_object(Bucket=bucket, Key=key, Body=source)
                if progress:
                    progress(len(source))
                    progress.file_done()
                return len(source)
            # s3transfer reports bytes as they are read, and takes them back (a negative
            # amount) when a retried request rewinds the file.
            client.upload_file(str(source), bucket, key, Callback=sent)
            if progress:
                progress.file_done()
            return source.stat().st_size
        except (BotoCoreError, ClientError) as err:
            raise StagingError(
                f"could not upload the input to s3://{bucket}/{key} on {endpoint}: {_reason(err)}"
            ) from None

    if not files:
        return 0
    if progress:
        progress.start(len(files), sum(_size(source) for _, source in files))
    with _stoppable(client, stop):
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=min(8, len(files)))
        try:
            return sum(pool.map(one, files))
        except BaseException:
            stop.set()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def _stoppable(client: Any, stop: threading.Event) -> Iterator[None]:
    """botocore hooks on ``client`` so that an upload stops at once, quietly, when ``stop`` is set.

    - no new upload, part or completion once stopped (AbortMultipartUpload, boto3's clean-up, is
      left alone);
    - no retry of a failed attempt once stopped: raised from the callback, _Stopped reaches
      botocore as a retryable HTTPClientError whose backoff would delay the stop by seconds. A
      successful attempt is never turned into a failure: boto3 must see the CreateMultipartUpload
      it has to abort;
    - the pure-Python SigV4 signer: boto3 interrupts the other parts' reads when one fails, and
      awscrt's signer (used when awscrt is installed) prints a traceback for each.
    """
    import botocore.auth

    def no_new_call(**_kwargs: Any) -> None:
        if stop.is_set():
            raise _Stopped

    def no_retry(response: Any = None, caught_exception: Any = None, **_kwargs: Any) -> None:
        failed = caught_exception is not None or (
            response is not None and getattr(response[0], "status_code", 200) >= 300
        )
        if failed and stop.is_set():
            raise _Stopped

    def python_signer(signature_version: str | None = None, **_kwargs: Any) -> str | None:
        # botocore's own choice for S3 ("v4", made "s3v4" by botocore's handler we preempt).
        return _PYTHON_S3V4 if signature_version in ("v4", "s3v4") else None

    botocore.auth.AUTH_TYPE_MAPS.setdefault(_PYTHON_S3V4, botocore.auth.S3SigV4Auth)
    hooks = [
        *((f"before-call.s3.{op}", no_new_call) for op in _STOPPABLE),
        *((f"needs-retry.s3.{op}", no_retry) for op in _STOPPABLE),
        *(
            (f"choose-signer.s3.{op}", python_signer)
            for op in (*_STOPPABLE, "AbortMultipartUpload")
        ),
    ]
    events = client.meta.events
    for name, hook in hooks:
        events.register_first(name, hook, unique_id=f"{_STOP_ID}-{name}")
    try:
        yield
    finally:
        for name, _hook in hooks:
            events.unregister(name, unique_id=f"{_STOP_ID}-{name}")


_STOPPABLE = ("PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload")
_STOP_ID = "hook-processor-harness-upload-stop"
_PYTHON_S3V4 = "hook-processor-python-s3v4"  # botocore's own S3 SigV4, whatever awscrt says


class _Stopped(Exception):
    """Internal: the upload was interrupted; raised inside boto3's callback to stop it."""


def _size(source: Path | bytes) -> int:
    return len(source) if isinstance(source, bytes) else source.stat().st_size


def ensure_bucket(client: Any, bucket: str, endpoint: str) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client.create_bucket(Bucket=bucket)
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") not in (
            "BucketAlreadyOwnedByYou",
            "BucketAlreadyExists",
        ):
            raise StagingError(
                f"could not create bucket {bucket} on {endpoint}: {_reason(err)}"
            ) from None
    except BotoCoreError as err:
        raise StagingError(
            f"could not create bucket {bucket} on {endpoint}: {_reason(err)}"
        ) from None


def download_private(
    client: Any, manifest_url: str, output_dir: Path, settings: Any, progress: Progress | None
) -> None:
    """Every object under the manifest's prefix (manifest included) into ``output_dir``."""
    from hook_processor import storage

    bucket, key = storage.parse_s3_url(manifest_url, option="Manifest")
    prefix = key.rpartition("/")[0]
    try:
        storage.stage_in(
            client, bucket, prefix + "/" if prefix else "", output_dir, settings, progress=progress
        )
    except StagingError as exc:
        raise PublishError(f"could not download the published output: {exc}") from None


def download_temporary(link: str, name: str, output_dir: Path, progress: Progress | None) -> Path:
    """Fetch the zip through its download link (plain HTTP GET), save it, unpack it beside it."""
    archive = output_dir / PurePosixPath(name).name
    handlers: list[Any] = []
    host = urllib.parse.urlsplit(link).hostname or ""
    if _is_loopback(host):
        handlers.append(urllib.request.ProxyHandler({}))  # never send a local link to a proxy
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(link, timeout=60) as response, archive.open("wb") as out:  # noqa: S310
            if progress:
                length = response.headers.get("Content-Length")
                progress.start(1, int(length) if length and length.isdigit() else None)
            while chunk := response.read(1024 * 1024):
                out.write(chunk)
                if progress:
                    progress(len(chunk))
        if progress:
            progress.file_done()
    except OSError as exc:
        archive.unlink(missing_ok=True)
        raise PublishError(
            f"could not download the output zip through its DownloadLink: {exc}"
        ) from None
    try:
        with zipfile.ZipFile(archive) as zipped:
            for member in zipped.infolist():
                rel = safe_relative(member.filename.rstrip("/"), "zip member")
                target = output_dir / rel
                if member.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zipped.open(member) as src, target.open("wb") as dst:
                    shutil.copyfileobj(src, dst)
    except (zipfile.BadZipFile, OptionsError) as exc:
        raise PublishError(f"the output zip {archive.name} cannot be unpacked: {exc}") from None
    return archive


def copy_unpublished(work_output: Path, output_dir: Path) -> bool:
    """Copy what process() wrote (never published) into ``output_dir``; True if anything."""
    if not work_output.is_dir() or not any(work_output.iterdir()):
        return False
    shutil.copytree(work_output, output_dir, dirs_exist_ok=True, symlinks=True)
    return True


def output_files(output_dir: Path, exclude: set[str]) -> dict[str, Path]:
    """{relative posix path: path} of the files in ``output_dir`` but ``exclude``, the marker."""
    skip = exclude | {MARKER}
    return {
        p.relative_to(output_dir).as_posix(): p
        for p in sorted(output_dir.rglob("*"))
        if p.is_file() and p.relative_to(output_dir).as_posix() not in skip
    }


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_loopback_url(url: str) -> bool:
    return _is_loopback(urllib.parse.urlsplit(url).hostname or "")


def _reason(err: BaseException) -> str:
    from hook_processor._s3.transfer import describe  # says "connection refused" in those words

    return describe(err).strip() or err.__class__.__name__
