"""Stage-in internals: plan local paths from one listing, then download them safely.

Safety rules (see :func:`plan`): a key is refused, before anything is written, when its path
relative to the staged prefix has an empty, ``.`` or ``..`` segment or a leading ``/``, or when
it is both a file and the folder of another key. Every file is written under a temporary name in
its final folder, its size checked against the listing, then renamed into place.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import os
import re
import secrets
import threading
from array import array
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError, FlexibleChecksumError

from hook_processor._s3.listing import Listing, objects
from hook_processor._s3.transfer import (
    CHUNK,
    READ_CHUNK,
    STREAM_ERRORS,
    Job,
    http_status,
    ranges,
)
from hook_processor._s3.wire import Crc32
from hook_processor.errors import StagingError

TEMP_MARK = ".hookpart-"
NAME_MAX = 255  # bytes of one file or folder name (ext4, xfs, btrfs, tmpfs, overlayfs)
_TEMP_NAME_KEEP = 100  # bytes of the final name kept in a temporary name (with the mark: < 255)


# slots: one is made per unit as the pool takes it, not one per key up front
@dataclasses.dataclass(frozen=True, slots=True)
class Remote:
    """One object of the listing and where it goes."""

    key: str
    size: int
    etag: str
    rel: str  # relative posix path under dest


class Remotes:
    """The objects a stage-in downloads: entries of its :class:`Listing`, in listing order.

    No object per key is kept: a :class:`Remote` is made as it is iterated (the listing holds
    the keys, sizes and ETags; ``indices`` which of them; the relative path is cut from the key).
    """

    __slots__ = ("_base", "_name", "indices", "listing")

    def __init__(
        self, listing: Listing, indices: range | array[int], base: str, name: str | None
    ) -> None:
        self.listing = listing
        self.indices = indices
        self._base = len(base)  # a key's relative path starts there
        self._name = name  # the one object's relative path (a single key staged), else None

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[Remote]:
        listing, base, name = self.listing, self._base, self._name
        keys, sizes = listing.keys, listing.sizes
        for i in self.indices:
            key = keys[i]
            yield Remote(key, sizes[i], listing.etag(i), key[base:] if name is None else name)

    def total_size(self) -> int:
        sizes = self.listing.sizes
        return sum(sizes[i] for i in self.indices)


def list_objects(job: Job, prefix: str) -> Listing:
    """Every object whose key starts with ``prefix`` (one paginated ListObjectsV2), compactly."""
    return Listing.of(objects(job, prefix))


def plan(job: Job, listing: Listing, key_or_prefix: str) -> Remotes:
    """Decide what the listing means (prefix, folder or one object) and check every path."""
    keys, sizes = listing.keys, listing.sizes
    name: str | None = None
    if key_or_prefix == "" or key_or_prefix.endswith("/"):
        base = key_or_prefix
        indices = _chosen(keys, lambda k: k.startswith(base))
    else:
        base = key_or_prefix + "/"
        indices = _chosen(keys, lambda k: k.startswith(base))
        if not indices:  # not a folder: one object, or nothing (siblings never count)
            indices = _chosen(keys, lambda k: k == key_or_prefix)
            name = key_or_prefix.rsplit("/", 1)[-1]
    for key, size in zip(keys, sizes, strict=True):
        # A folder marker (a key ending in "/") is empty by convention and is skipped. One that
        # holds bytes cannot become a local file: refuse it rather than drop its data silently.
        if key.endswith("/") and key.startswith(base) and size > 0:
            raise StagingError(
                f"refusing to stage the key {key!r} of s3://{job.bucket}: it ends with '/' "
                f"(a folder marker) but holds {size} bytes, which no local file can keep; "
                "rename that object"
            )
    if not indices:
        raise StagingError(
            f"nothing found at {job.url(key_or_prefix)} (endpoint {job.endpoint}): no object with "
            "that key and no objects under it; check the bucket and the path"
        )
    remotes = Remotes(listing, indices, base, name)
    for r in remotes:
        _check_rel(job, r, base)
    _check_conflicts(job, remotes)
    return remotes


def _chosen(keys: list[str], wanted: Callable[[str], bool]) -> range | array[int]:
    """The indices of the keys ``wanted`` keeps, folder markers (keys ending in "/") left out:
    a ``range`` when that is all of them (no copy), else an array of 8 bytes an index."""
    picked = array("q", (i for i, k in enumerate(keys) if not k.endswith("/") and wanted(k)))
    return range(len(keys)) if len(picked) == len(keys) else picked


def _check_rel(job: Job, remote: Remote, base: str) -> None:
    segments = remote.rel.split("/")
    if any(s in ("", ".", "..") for s in segments) or "\0" in remote.rel:
        raise StagingError(
            f"refusing to stage the key {remote.key!r} of s3://{job.bucket}: its path relative to "
            f"{job.url(base)!r} has an empty, '.' or '..' segment or a leading '/', so it could "
            "land outside input_dir; rename or remove that object"
        )
    for segment in segments:
        if len(os.fsencode(segment)) > NAME_MAX:
            raise StagingError(
                f"refusing to stage the key {remote.key!r} of s3://{job.bucket}: its name "
                f"{segment[:40]!r}... is {len(os.fsencode(segment))} bytes, and no local file or "
                f"folder name can be longer than {NAME_MAX} bytes; rename that object"
            )


def _check_conflicts(job: Job, remotes: Remotes) -> None:
    """No key is both a file and the folder of another key.

    The folders (every proper parent of a relative path) are collected first, not the files: a
    tree has far fewer folders than files. Only when a file is also a folder are the remotes
    walked again, in order, to name the same pair as a check against every file would.
    """
    folders: set[str] = set()
    for r in remotes:
        rel = r.rel
        cut = rel.rfind("/")
        while cut > 0 and (parent := rel[:cut]) not in folders:
            folders.add(parent)
            cut = rel.rfind("/", 0, cut)
    files = {r.rel: r.key for r in remotes if r.rel in folders}  # files that are folders too
    if not files:
        return
    for r in remotes:
        parts = r.rel.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent in files:
                raise StagingError(
                    f"refusing to stage s3://{job.bucket}: the key {files[parent]!r} is a file "
                    f"and also the folder of the key {r.key!r}; a local folder cannot be both"
                )


class TempFiles:
    """Temporary files of one stage-in; whatever was not renamed into place is removed."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self._real_dest = os.path.realpath(dest)
        self._open: dict[str, int | None] = {}
        self._safe_dirs: set[str] = set()
        self._lock = threading.Lock()

    def create(self, final: Path) -> tuple[str, int]:
        parent = final.parent
        if str(parent) not in self._safe_dirs:
            parent.mkdir(parents=True, exist_ok=True)
            real = os.path.realpath(parent)
            if real != self._real_dest and not real.startswith(self._real_dest + os.sep):
                raise StagingError(
                    f"refusing to write {final}: a folder on its way is a link out of {self.dest}"
                )
            self._safe_dirs.add(str(parent))
        tmp = str(parent / f".{_name_start(final.name)}{TEMP_MARK}{secrets.token_hex(6)}")
        # Read and write: the hasher of a large object reads back what the parts wrote.
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        with self._lock:
            fd = os.open(tmp, flags, 0o666)
            self._open[tmp] = fd
        return tmp, fd

    def commit(self, tmp: str, fd: int, final: Path, size: int, url: str) -> None:
        """Check the size against the listing, close, rename into place."""
        actual = os.fstat(fd).st_size
        if actual != size:
            raise StagingError(
                f"{url}: wrote {actual} bytes but the listing said {size}; "
                "the object changed during staging, run again"
            )
        with self._lock:
            self._open[tmp] = None
        os.close(fd)
        os.replace(tmp, final)
        with self._lock:
            del self._open[tmp]

    def cleanup(self) -> None:
        with self._lock:
            leftovers, self._open = self._open, {}
        for tmp, fd in leftovers.items():
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def _name_start(name: str) -> str:
    """The first ``_TEMP_NAME_KEEP`` bytes of ``name``, cut between characters: a temporary
    name is then at most 1 + 100 + 10 + 12 = 123 bytes, whatever the script of the name."""
    raw = os.fsencode(name)[:_TEMP_NAME_KEEP]
    return raw.decode("utf-8", errors="ignore")


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


# Response checksums the engines validate on whole-object GETs (with ``when_supported``).
_VALIDATED = ("x-amz-checksum-crc32", "x-amz-checksum-sha1", "x-amz-checksum-sha256")
_MD5 = re.compile(r"[0-9a-f]{32}")


def md5_etag(etag: str, headers: dict[str, str]) -> str | None:
    """The object's MD5 when its ETag is one (a single-part upload, no SSE-KMS / SSE-C), else
    None: a multipart ETag ends in ``-N`` and an encrypted object's is not its MD5."""
    value = etag.strip('"').lower()
    if not _MD5.fullmatch(value):
        return None
    if headers.get("x-amz-server-side-encryption", "AES256").upper() != "AES256":
        return None
    if "x-amz-server-side-encryption-customer-algorithm" in headers:
        return None
    return value


def _headers(response: dict[str, Any]) -> dict[str, str]:
    return dict(response.get("ResponseMetadata", {}).get("HTTPHeaders", {}))


def _etag_is_no_md5(job: Job, remote: Remote, headers: dict[str, str]) -> bool:
    """Whether an ETag that the body's MD5 does not match is no MD5 at all (SSE-KMS, SSE-C):
    said by the GET's headers, or, for an engine that shows none (obstore), by one HEAD of the
    version listed. Only then is a mismatch not a corrupted body."""
    if any(h.startswith("x-amz-server-side-encryption") for h in headers):
        return md5_etag(remote.etag, headers) is None
    params: dict[str, Any] = {"Bucket": job.bucket, "Key": remote.key}
    if remote.etag:
        params["IfMatch"] = remote.etag
    try:
        head = _pinned(job, job.s3.head_object, remote, params)
    except (ClientError, StagingError):
        return False  # changed or gone: the retry's pinned GET says which
    return md5_etag(remote.etag, _headers(head)) is None


def _pinned(
    job: Job, call: Callable[..., dict[str, Any]], remote: Remote, params: dict[str, Any]
) -> dict[str, Any]:
    """A GET or HEAD pinned to the listed version (``If-Match`` in ``params``); its 412 is the
    object changed since the listing, said so."""
    try:
        return job.call(call, **params)
    except ClientError as err:
        if http_status(err) == 412:
            raise StagingError(
                f"{job.url(remote.key)} changed during staging (it is no longer the version "
                f"the listing named, ETag {remote.etag}); run again"
            ) from err
        raise


def fetch(
    job: Job, remote: Remote, fd: int, offset: int, length: int, ranged: bool
) -> dict[str, str]:
    """GET ``length`` bytes (the whole object, or one range) into ``fd`` at ``offset``; returns
    the response headers.

    The body is streamed in READ_CHUNK pieces; a stream broken after the 200 OK is retried
    (botocore only retries the request itself) up to ``settings.max_attempts`` times, and the
    bytes it had counted as progress are taken back: the retry counts them again. A whole
    object that the engine did not check against a stored checksum is checked against its MD5
    ETag (if it has one): a corrupted body is retried the same way.
    """
    params: dict[str, Any] = {"Bucket": job.bucket, "Key": remote.key}
    if ranged:
        params["Range"] = f"bytes={offset}-{offset + length - 1}"
    if remote.etag:
        # The version listed, or 412: never parts of two versions, nor a same-size replacement
        # staged in place of the object the listing (and its size check) described.
        params["IfMatch"] = remote.etag
    attempts = max(1, job.settings.max_attempts)
    for attempt in range(1, attempts + 1):
        job.check()
        response = _pinned(job, job.s3.get_object, remote, params)
        body = response["Body"]
        headers = _headers(response)
        validated = job.settings.checksum == "when_supported" and any(
            "-" not in headers.get(h, "-") for h in _VALIDATED
        )
        md5 = None if ranged or validated else md5_etag(remote.etag, headers)
        digest = hashlib.md5(usedforsecurity=False) if md5 else None
        got = 0
        try:
            if int(response.get("ContentLength", length)) != length:
                raise StagingError(
                    f"{job.url(remote.key)} is {response.get('ContentLength')} bytes now but "
                    f"{remote.size} in the listing: it changed during staging, run again"
                )
            pos = offset
            while True:
                job.check()
                chunk = body.read(READ_CHUNK)
                if not chunk:
                    break
                _pwrite_all(fd, chunk, pos)
                if digest is not None:
                    digest.update(chunk)
                pos += len(chunk)
                got += len(chunk)
                job.arrived(len(chunk))
            if (
                digest is not None
                and got == length
                and digest.hexdigest() != md5
                and not _etag_is_no_md5(job, remote, headers)
            ):
                raise FlexibleChecksumError(
                    error_msg=f"the body of {job.url(remote.key)} does not match its MD5 ETag "
                    f"{md5} (corrupted in transit)"
                )
        except STREAM_ERRORS:
            if attempt == attempts:
                raise
            job.retried()
            job.arrived(-got)
            continue
        finally:
            body.close()
        if got != length:
            raise StagingError(
                f"{job.url(remote.key)}: received {got} bytes, expected {length}; run again"
            )
        return headers
    raise AssertionError("unreachable")  # the last attempt returns or raises


class _BigFile:
    """A large object fetched as ranged GETs into one preallocated temporary file, its
    whole-object checksum computed as the parts land.

    The parts are submitted in order (at most ``concurrency`` in flight), so the file fills
    roughly front to back: whichever worker lands the part at the hash cursor hashes it, and every
    landed part after it, from the page cache, while the others keep downloading. The old way, one
    pass over the whole file after the last part, took ~40 % of a 1 GiB stage-in (profile in
    BENCHMARKS.md); now only the tail is hashed after the last byte arrives.
    """

    def __init__(self, remote: Remote, final: Path, nparts: int) -> None:
        self.remote = remote
        self.final = final
        self.remaining = nparts
        self.lock = threading.Lock()
        self.tmp: str | None = None
        self.fd = -1
        self.check: _WholeCheck | None = None  # what the bytes must match (None: nothing)
        self._checked = False  # self.check is decided (by the first hasher)
        self._landed: dict[int, int] = {}  # offset -> length: written, not hashed yet
        self._cursor = 0  # bytes hashed (or passed, without a check) from the start
        self._hashing = threading.Lock()  # one hasher at a time; the others download
        self._finished = False

    def open(self, temps: TempFiles) -> int:
        with self.lock:
            if self.tmp is None:
                self.tmp, self.fd = temps.create(self.final)
                _preallocate(self.fd, self.remote.size)
            return self.fd

    def landed(self, job: Job, offset: int, length: int) -> bool:
        """Record the part at ``offset`` as written and hash what is contiguous from the cursor.

        True for exactly one caller: the one whose hashing reached the last byte (it verifies
        and commits the file). A part that lands while another worker hashes is left to that
        worker, which looks again after it lets the hash go.
        """
        with self.lock:
            self._landed[offset] = length
        while True:
            if not self._hashing.acquire(blocking=False):
                return False
            try:
                self._advance(job)
                if self._cursor == self.remote.size and not self._finished:
                    self._finished = True
                    return True
            finally:
                self._hashing.release()
            with self.lock:
                if self._cursor not in self._landed:
                    return False

    def _advance(self, job: Job) -> None:
        if not self._checked:
            # The HEAD is the first hasher's, not open()'s: the other parts of the object
            # download meanwhile instead of waiting for it (and for the boto3 client it makes).
            self.check = _whole_check(job, self.remote)
            self._checked = True
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        while True:
            with self.lock:
                length = self._landed.pop(self._cursor, None)
            if length is None:
                return
            if self.check is not None:
                pos, end = self._cursor, self._cursor + length
                while pos < end:
                    job.check()
                    n = os.preadv(self.fd, [view[: min(CHUNK, end - pos)]], pos)
                    if n <= 0:
                        raise StagingError(f"{self.tmp}: could not read back what was written")
                    self.check.digest.update(view[:n])
                    pos += n
            self._cursor += length


def _preallocate(fd: int, size: int) -> None:
    try:
        os.posix_fallocate(fd, 0, size)  # ENOSPC now rather than halfway
    except (AttributeError, OSError):
        os.ftruncate(fd, size)


def units(job: Job, remotes: Iterable[Remote], temps: TempFiles) -> Iterator[Callable[[], None]]:
    """One unit per small object, one per part of each object above the threshold, made as the
    pool takes them (``Job.run`` takes a few at a time): a list of every unit's closures, paths
    and strings made up front held ~1.2 KB a key (tracemalloc), 120 MB at 100,000 keys.

    A large object is cut into ``part_size`` ranges (``HOOK_PART_SIZE_MB``), submitted in order,
    so that its checksum is computed as they land (:class:`_BigFile`). Memory does not depend on
    the object's size: bodies are streamed in READ_CHUNKs. A store that reads the whole object
    for every ranged GET (moto: 256 MiB took 7.2 s in 8 MiB ranges, 1.3 s in 64 MiB ones) pays
    that per range: ``max_ranges`` (``HOOK_DOWNLOAD_RANGES``, which the harness sets for its
    moto) caps the ranges of one object.
    """
    settings = job.settings
    for remote in remotes:
        final = temps.dest.joinpath(*remote.rel.split("/"))
        what = f"could not download {job.url(remote.key)} to {final}"
        part_size = max(1, settings.part_size)
        if settings.max_ranges > 0:
            part_size = max(part_size, -(-remote.size // settings.max_ranges))
        if remote.size <= settings.multipart_threshold or remote.size <= part_size:
            yield job.unit(what, _small(job, remote, final, temps))
            continue
        big = _BigFile(remote, final, len(ranges(remote.size, part_size)))
        for offset, length in ranges(remote.size, part_size):
            yield job.unit(what, _part(job, big, offset, length, temps))


def _small(job: Job, remote: Remote, final: Path, temps: TempFiles) -> Callable[[], None]:
    def run() -> None:
        job.check()
        tmp, fd = temps.create(final)
        fetch(job, remote, fd, 0, remote.size, ranged=False)
        temps.commit(tmp, fd, final, remote.size, job.url(remote.key))
        job.file_done()

    return run


def _part(
    job: Job, big: _BigFile, offset: int, length: int, temps: TempFiles
) -> Callable[[], None]:
    def run() -> None:
        job.check()
        fd = big.open(temps)
        fetch(job, big.remote, fd, offset, length, ranged=True)
        if big.landed(job, offset, length):
            assert big.tmp is not None
            if big.check is not None:
                big.check.verify(job, big.remote)
            temps.commit(big.tmp, fd, big.final, big.remote.size, job.url(big.remote.key))
            job.file_done()

    return run


# Full-object checksums we can compute with the standard library (botocore names, digest).
_WHOLE_CHECKSUMS: tuple[tuple[str, Callable[[], Any]], ...] = (
    ("ChecksumCRC32", lambda: Crc32()),
    ("ChecksumSHA256", lambda: hashlib.sha256()),
    ("ChecksumSHA1", lambda: hashlib.sha1(usedforsecurity=False)),
)


@dataclasses.dataclass
class _WholeCheck:
    """The digest a large object's assembled bytes must give: its stored checksum or MD5 ETag."""

    field: str  # "MD5" or a botocore checksum field ("ChecksumCRC32" ...)
    expected: str  # hex for MD5, base64 for the others (as the store says them)
    digest: Any

    def verify(self, job: Job, remote: Remote) -> None:
        d = self.digest
        got = d.hexdigest() if self.field == "MD5" else base64.b64encode(d.digest()).decode()
        if got != self.expected:
            raise StagingError(
                f"{job.url(remote.key)}: the downloaded bytes do not match the object's stored "
                f"{self.field.removeprefix('Checksum')} checksum (corrupted in transit); run again"
            )


def _whole_check(job: Job, remote: Remote) -> _WholeCheck | None:
    """What a large object assembled from ranged GETs is checked against, from one HEAD.

    A ranged GET comes without a checksum (S3 stores one for the whole object), so a byte
    corrupted in transit would pass the size check. The object's full-object checksum (when it
    has one of a kind we can compute: not a composite ``...-N`` of a multipart upload), else
    its MD5 ETag (a single-part upload without SSE-KMS or SSE-C, which the HEAD's headers say
    whatever the engine), is compared with the assembled file before it is renamed into place;
    a mismatch fails the staging (no partial file is kept) instead of keeping corrupt data.
    None: the object has neither (a multipart upload without a full-object checksum).
    """
    params: dict[str, Any] = {"Bucket": job.bucket, "Key": remote.key}
    if job.settings.checksum == "when_supported":  # else the store may not support checksums
        params["ChecksumMode"] = "ENABLED"
    if remote.etag:
        params["IfMatch"] = remote.etag
    head = _pinned(job, job.s3.head_object, remote, params)
    if job.settings.checksum == "when_supported":
        stored = _stored_checksum(head, remote)
        if stored is not None:
            return stored
    md5 = md5_etag(remote.etag, _headers(head))
    if md5 is None:
        return None
    return _WholeCheck("MD5", md5, hashlib.md5(usedforsecurity=False))


def _stored_checksum(head: dict[str, Any], remote: Remote) -> _WholeCheck | None:
    """The object's full-object checksum from its HEAD (with ChecksumMode), or None."""
    kind = head.get("ChecksumType")
    if kind is None and "-" in str(head.get("ETag", remote.etag)).strip('"'):
        # A multipart object whose store does not say the checksum's type (moto 5.2 answers
        # the value without ChecksumType or a "-N" suffix): not a whole-object checksum.
        return None
    if (kind or "FULL_OBJECT") != "FULL_OBJECT":
        return None
    usable = [(f, make) for f, make in _WHOLE_CHECKSUMS if "-" not in str(head.get(f) or "-")]
    if not usable:
        return None
    field, make = usable[0]
    return _WholeCheck(field, str(head[field]), make())
