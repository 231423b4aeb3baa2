"""Stage-in internals: plan local paths from one listing, then download them safely.

Safety rules (see :func:`plan`): a key is refused, before anything is written, when its path
relative to the staged prefix has an empty, ``.`` or ``..`` segment or a leading ``/``, or when
it is both a file and the folder of another key. Every file is written under a temporary name in
its final folder, its size checked against the listing, then renamed into place.
"""

from __future__ import annotations

import dataclasses
import hashlib
import mmap
import os
import threading
from array import array
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from botocore.exceptions import FlexibleChecksumError

from hook_processor._s3.download_checks import (
    VALIDATED,
    WholeCheck,
    etag_is_no_md5,
    headers_of,
    md5_etag,
    pinned,
    whole_check,
)
from hook_processor._s3.listing import Listing, objects
from hook_processor._s3.tempfiles import TempFiles
from hook_processor._s3.transfer import (
    READ_CHUNK,
    STREAM_ERRORS,
    Job,
    ranges,
)
from hook_processor.errors import StagingError

NAME_MAX = 255  # bytes of one file or folder name (ext4, xfs, btrfs, tmpfs, overlayfs)
# Bytes of a large object's file mapped and hashed per call (BigFile._hash): a cancellation is
# seen within ~3 ms of MD5 here, and the mapping adds at most this much to the RSS per hasher.
HASH_WINDOW = 2 * 1024 * 1024


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


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


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
        response = pinned(job, job.s3.get_object, remote, params)
        body = response["Body"]
        headers = headers_of(response)
        validated = job.settings.checksum == "when_supported" and any(
            "-" not in headers.get(h, "-") for h in VALIDATED
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
                and not etag_is_no_md5(job, remote, headers)
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
        self.check: WholeCheck | None = None  # what the bytes must match (None: nothing)
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
            self.check = whole_check(job, self.remote)
            self._checked = True
        while True:
            with self.lock:
                length = self._landed.pop(self._cursor, None)
            if length is None:
                return
            if self.check is not None:
                self._hash(job, self.check, self._cursor, length)
            self._cursor += length

    def _hash(self, job: Job, check: WholeCheck, start: int, length: int) -> None:
        """Feed bytes ``start .. start + length`` of the file to ``check``, mapped from the page
        cache a window of HASH_WINDOW at a time, not read into a buffer: no copy, and one call
        (one release of the GIL) per window instead of per 1 MiB read.

        The window is small on purpose: mapped pages count in the process's RSS while mapped,
        and whole 8 MiB parts mapped by the hashers of several large files at once raised the
        peak RSS of a SAFE-like stage-in from 64 MB to 120 MB (BENCHMARKS.md, third pass).
        """
        if os.fstat(self.fd).st_size < start + length:  # a mapping past the end is a SIGBUS
            raise StagingError(f"{self.tmp}: could not read back what was written")
        pos, end = start, start + length
        while pos < end:
            job.check()
            base = pos - pos % mmap.ALLOCATIONGRANULARITY  # a mapping starts on a granule
            step = min(HASH_WINDOW - (pos - base), end - pos)
            with mmap.mmap(self.fd, pos - base + step, offset=base, access=mmap.ACCESS_READ) as mm:
                view = memoryview(mm)
                try:
                    check.digest.update(view[pos - base :])
                finally:
                    view.release()  # else closing the mapping fails: "exported pointers exist"
            pos += step


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
