"""Publication internals: upload the walked files (PRIVATE), stream a zip (TEMPORARY).

What is published, and how a file changed during publication shows, is walk.py's.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import threading
import zipfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from hook_processor._s3.engine import Payload
from hook_processor._s3.transfer import CHUNK, MAX_PARTS, Job, part_size_for, ranges
from hook_processor._s3.walk import Local, changed, stamp
from hook_processor.errors import PublishError


class Results:
    """What each upload answered, by the file's index in the walk, in columns: its SHA-256 (32
    bytes) and the stored ETag (16 bytes when it is an MD5 in hex, as a PUT's is; else kept as
    text): ~50 bytes a file, where a record object of strings keyed by path took ~350."""

    __slots__ = ("_done", "_md5s", "_odd_etags", "_sha256s")

    def __init__(self, count: int) -> None:
        self._sha256s = bytearray(32 * count)
        self._md5s = bytearray(16 * count)
        self._odd_etags: dict[int, str] = {}  # an ETag of another form, by index
        self._done = bytearray(count)  # 1: uploaded
        # (Each put writes its own slices: one C-level assignment each, under the GIL.)

    def put(self, index: int, sha256: bytes, etag: str) -> None:
        if len(sha256) != 32:  # a slice of another length would shift every later record
            raise ValueError(f"a SHA-256 is 32 bytes, not {len(sha256)}")
        self._sha256s[32 * index : 32 * index + 32] = sha256
        raw = _md5_hex(etag)
        if raw is None:
            self._odd_etags[index] = etag
        else:
            self._md5s[16 * index : 16 * index + 16] = raw
        self._done[index] = 1

    def _check(self, index: int) -> None:
        if not self._done[index]:
            raise KeyError(index)  # never uploaded: the run stopped before the manifest

    def sha256(self, index: int) -> str:
        self._check(index)
        return self._sha256s[32 * index : 32 * index + 32].hex()

    def etag(self, index: int) -> str:
        self._check(index)
        odd = self._odd_etags.get(index)
        return odd if odd is not None else self._md5s[16 * index : 16 * index + 16].hex()


def _md5_hex(etag: str) -> bytes | None:
    """The 16 bytes of an ETag of 32 lowercase hex digits, else None."""
    if len(etag) != 32:
        return None
    try:
        raw = bytes.fromhex(etag)
    except ValueError:
        return None
    return raw if len(raw) == 16 and raw.hex() == etag else None


class _Multipart:
    """One large file: parts in parallel; the last one to finish completes it.

    Each part is read once, into memory; its checksums and the file's SHA-256 (for the
    manifest) are computed from the bytes it sends. SHA-256 cannot be combined out of order, so
    a part, once read, waits for its predecessor to be hashed before it is hashed and sent:
    parts are submitted in order to a FIFO pool, so the earliest part not yet hashed is always
    running and never waits (nor for room: ``Buffers``' urgent part); no deadlock.
    """

    def __init__(self, index: int, local: Local, key: str, part_size: int) -> None:
        self.index = index  # the file's, in the walk (its place in Results)
        self.local = local
        self.key = key
        self.parts = ranges(local.size, part_size)
        self.remaining = len(self.parts)
        self.lock = threading.Lock()
        self.upload_id: str | None = None
        self.etags: dict[int, str] = {}
        self.digest = hashlib.sha256()
        self.hashed = 0  # parts fed to ``digest``, in order
        self.turn = threading.Condition()
        self.completed = False

    def hash_in_order(self, job: Job, number: int, data: bytes) -> None:
        """Feed part ``number``'s bytes to the file's SHA-256 once parts 1..number-1 are in."""
        with self.turn:
            while self.hashed != number - 1:
                job.check()  # the job stopped: the predecessor will never come
                self.turn.wait(0.1)
            self.digest.update(data)
            self.hashed = number
            self.turn.notify_all()

    def start(self, job: Job) -> str:
        with self.lock:
            if self.upload_id is None:
                job.check()
                response = job.call(job.s3.create_multipart_upload, Bucket=job.bucket, Key=self.key)
                self.upload_id = str(response["UploadId"])
            return self.upload_id

    def one_done(self) -> bool:
        with self.lock:
            self.remaining -= 1
            return self.remaining == 0

    def abort(self, job: Job) -> None:
        if self.upload_id is not None and not self.completed:
            with contextlib.suppress(Exception):  # best effort
                job.s3.abort_multipart_upload(
                    Bucket=job.bucket, Key=self.key, UploadId=self.upload_id
                )


def verify_size(job: Job, key: str, size: int) -> str:
    """Check the stored size; return the stored ETag (what a listing shows: some stores,
    rclone's among them, give a completed multipart upload another ETag than its answer)."""
    head = job.call(job.s3.head_object, Bucket=job.bucket, Key=key)
    if int(head.get("ContentLength", -1)) != size:
        raise PublishError(
            f"{job.url(key)} holds {head.get('ContentLength')} bytes after upload, expected "
            f"{size}; run again"
        )
    return str(head.get("ETag", "")).strip('"')


def private_units(
    job: Job,
    src: Path,
    files: Sequence[Local],
    prefix: str,
    results: Results,
    multiparts: list[_Multipart],
) -> Iterator[Callable[[], None]]:
    """Units that upload ``files`` under ``prefix``; results land in ``results`` by index,
    each large file's upload in ``multiparts`` (for the abort) once its first unit is made.

    Made as the pool asks for them (``Job.run`` takes a few at a time): at 100,000 files a
    list of every unit's closures and strings held ~2 KB per file for the whole publication."""
    settings = job.settings
    for index, local in enumerate(files):
        key = f"{prefix}/{local.rel}" if prefix else local.rel
        shown = str(src / local.rel)
        what = f"could not upload {shown} to {job.url(key)}"
        if local.size <= settings.multipart_threshold:
            yield job.unit(what, _put(job, index, local, key, shown, results))
            continue
        mp = _Multipart(index, local, key, part_size_for(local.size, settings.part_size))
        multiparts.append(mp)
        for number, (offset, length) in enumerate(mp.parts, start=1):
            yield job.unit(what, _part(job, mp, number, offset, length, shown, results))


def _read(local: Local, offset: int, length: int, shown: str, *, last: bool) -> bytes:
    """``length`` bytes of ``local`` from ``offset``, read once; ``last``: the file must end
    there (one byte more is asked for, so a file that grew is noticed too). The file's stamp
    after the read must be the one of the walk, before any read: else it was written (torn)."""
    want = length + 1 if last else length
    with open(local.path, "rb", buffering=0) as fh:
        if offset:
            fh.seek(offset)
        # One read makes the bytes object that is hashed and sent (no copy from a bytearray);
        # a regular file answers in full but at its end, so the loop is for a short read.
        data = fh.read(want)
        if len(data) < want and (more := _read_rest(fh, want - len(data))):
            data += more
        after = stamp(os.fstat(fh.fileno()))
    if len(data) != length or (local.stamp and after != local.stamp):
        raise changed(local, shown)
    return data


def _read_rest(fh: Any, want: int) -> bytes:
    """Up to ``want`` bytes more of ``fh`` after a short read (a pipe-like or racing file)."""
    blocks: list[bytes] = []
    while want > 0 and (block := fh.read(want)):
        blocks.append(block)
        want -= len(block)
    return b"".join(blocks)


def _put(
    job: Job, index: int, local: Local, key: str, shown: str, results: Results
) -> Callable[[], None]:
    def run() -> None:
        job.check()
        job.buffers.take(job, local.size)
        try:
            # Read once: the manifest's SHA-256 and the upload's checksums are of the bytes sent.
            body = Payload(data=_read(local, 0, local.size, shown, last=True))
            md5, sha256 = body.md5(), body.sha256()
            response = job.call(job.s3.put_object, Bucket=job.bucket, Key=key, Body=body)
            del body
        finally:
            job.buffers.give(local.size)
        # A plain PUT's ETag is the MD5 of the bytes (except with SSE-KMS): a match is our
        # verification for free; otherwise one HEAD checks the size.
        etag = str(response.get("ETag", "")).strip('"')
        if etag != md5:
            etag = verify_size(job, key, local.size)
        job.arrived(local.size)
        results.put(index, bytes.fromhex(sha256), etag)
        job.file_done()

    return run


def _part(
    job: Job,
    mp: _Multipart,
    number: int,
    offset: int,
    length: int,
    shown: str,
    results: Results,
) -> Callable[[], None]:
    def run() -> None:
        job.check()
        upload_id = mp.start(job)
        last = number == len(mp.parts)
        job.buffers.take(job, length, urgent=lambda: mp.hashed == number - 1)
        try:
            data = _read(mp.local, offset, length, shown, last=last)  # once: sent, hashed
            # Hashed before it is sent: the in-order SHA-256 then waits only for the reads of
            # the parts before this one, and a part gives its room back once it is sent. Hashed
            # after, a part that was sent held its room until every part before it was sent too:
            # one slow part stopped the file's others from starting.
            mp.hash_in_order(job, number, data)
            response = job.call(
                job.s3.upload_part,
                Bucket=job.bucket,
                Key=mp.key,
                UploadId=upload_id,
                PartNumber=number,
                Body=Payload(data=data),
            )
            with mp.lock:
                mp.etags[number] = str(response["ETag"])
            job.arrived(length)
            del data
        finally:
            job.buffers.give(length)
        if mp.one_done():
            _complete(job, mp, results)

    return run


def _complete(job: Job, mp: _Multipart, results: Results) -> None:
    job.check()
    assert mp.upload_id is not None
    parts = [{"PartNumber": n, "ETag": mp.etags[n]} for n in sorted(mp.etags)]
    job.call(
        job.s3.complete_multipart_upload,
        Bucket=job.bucket,
        Key=mp.key,
        UploadId=mp.upload_id,
        MultipartUpload={"Parts": parts},
    )
    mp.completed = True
    etag = verify_size(job, mp.key, mp.local.size)
    results.put(mp.index, mp.digest.digest(), etag)
    job.file_done()


# Formats that are compressed by nature or, as written by the usual tools, internally: deflating
# them again costs CPU for a few bytes at best. They go into the TEMPORARY zip as they are
# (ZIP_STORED); every other file is deflated. JPEG 2000 (Sentinel-2 bands), archives and
# compressed streams, PNG/JPEG/WebP, TIFF (GeoTIFFs and COGs are usually DEFLATE/LZW/ZSTD
# tiled) and NetCDF (NetCDF-4 is HDF5 with per-variable compression). Not listed: HDF5
# (.h5/.hdf5), whose datasets are as often uncompressed. Matched case-insensitively.
STORED_SUFFIXES = frozenset(
    {
        ".jp2", ".j2k",
        ".zip", ".gz", ".tgz", ".bz2", ".xz", ".zst", ".7z",
        ".png", ".jpg", ".jpeg", ".webp",
        ".tif", ".tiff",
        ".nc", ".nc4",
    }
)  # fmt: skip


def zip_compression(name: str) -> int:
    """ZIP_STORED for a name with one of STORED_SUFFIXES, else ZIP_DEFLATED."""
    suffix = os.path.splitext(name)[1].lower()
    return zipfile.ZIP_STORED if suffix in STORED_SUFFIXES else zipfile.ZIP_DEFLATED


def add_to_zip(job: Job, archive: zipfile.ZipFile, local: Local) -> None:
    """``archive.write(local.path, local.rel)``, with progress as the file's bytes go in; an
    already-compressed format is stored as it is (:data:`STORED_SUFFIXES`)."""
    info = zipfile.ZipInfo.from_file(local.path, local.rel, strict_timestamps=False)
    info.compress_type = zip_compression(local.rel)
    with open(local.path, "rb") as src, archive.open(info, "w") as dest:
        while chunk := src.read(CHUNK):
            dest.write(chunk)
            job.arrived(len(chunk))
        if local.stamp and stamp(os.fstat(src.fileno())) != local.stamp:
            raise changed(local, local.path)  # written while zipped: the entry may be torn
    job.file_done()


def head_exists(job: Job, key: str) -> bool:
    """Does ``key`` exist? (404 -> False; any other error propagates.)"""
    try:
        job.call(job.s3.head_object, Bucket=job.bucket, Key=key)
    except ClientError as err:
        code = str(err.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


class MultipartSink:
    """A write-only file-like that uploads what it is given as multipart parts.

    This is the engine's own streaming multipart writer: every byte goes out through the
    :class:`~hook_processor._s3.engine.Engine`'s ``create_multipart_upload`` / ``upload_part`` /
    ``complete_multipart_upload`` (and ``abort_multipart_upload``), so the zip gets the same
    checksums, retries and progress as any other upload on either engine. A third-party writer
    (smart-open) would bring a second S3 client with its own retry and checksum behaviour.

    At most ``inflight`` parts (each ``part_size`` bytes) are held in memory at once; nothing is
    written to local disk. If everything fits in one part it is sent with a single PutObject.
    """

    def __init__(self, job: Job, key: str, part_size: int, inflight: int) -> None:
        self.job = job
        self.key = key
        self.part_size = max(1, part_size)
        self.size = 0
        self.sha256 = hashlib.sha256()
        self._buf = bytearray()
        self._upload_id: str | None = None
        self._next = 1
        self._etags: dict[int, str] = {}
        self._futures: list[Future[None]] = []
        self._slots = threading.BoundedSemaphore(inflight)
        self._pool = ThreadPoolExecutor(max_workers=inflight, thread_name_prefix="hook-zip")
        self._discard = False
        self._completed = False

    # the file-like side, for zipfile (not seekable: it writes data descriptors)
    def write(self, data: bytes, /) -> int:
        n = len(data)
        if self._discard:
            return n
        self.job.check()
        self._buf += data
        self.size += n
        self.sha256.update(data)
        while len(self._buf) >= self.part_size:
            chunk = bytes(self._buf[: self.part_size])
            del self._buf[: self.part_size]
            self._send(chunk)
        return n

    def tell(self) -> int:
        return self.size

    def seekable(self) -> bool:
        return False

    def seek(self, *args: Any) -> int:
        raise io.UnsupportedOperation("seek")

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass  # finish() or abort() ends the upload; zipfile never closes a file it was given

    # the upload side
    def _send(self, chunk: bytes) -> None:
        self._raise_failed()
        if self._upload_id is None:
            response = self.job.call(
                self.job.s3.create_multipart_upload, Bucket=self.job.bucket, Key=self.key
            )
            self._upload_id = str(response["UploadId"])
        number = self._next
        if number > MAX_PARTS:
            raise PublishError(
                f"the zip for {self.job.url(self.key)} needs more than {MAX_PARTS} parts of "
                f"{self.part_size} bytes; raise the part size"
            )
        self._next += 1
        while not self._slots.acquire(timeout=0.5):
            self.job.check()
            self._raise_failed()
        future = self._pool.submit(self._upload, number, chunk, self._upload_id)
        future.add_done_callback(lambda _f: self._slots.release())
        self._futures.append(future)

    def _upload(self, number: int, chunk: bytes, upload_id: str) -> None:
        self.job.check()
        response = self.job.call(
            self.job.s3.upload_part,
            Bucket=self.job.bucket,
            Key=self.key,
            UploadId=upload_id,
            PartNumber=number,
            Body=Payload(data=chunk),
        )
        self._etags[number] = str(response["ETag"])

    def _raise_failed(self) -> None:
        for future in self._futures:
            if future.done() and future.exception() is not None:
                raise future.exception()  # type: ignore[misc]

    def finish(self) -> None:
        """Upload what is left and complete the object."""
        if self._upload_id is None:
            body = bytes(self._buf)
            self.job.check()
            self.job.call(
                self.job.s3.put_object,
                Bucket=self.job.bucket,
                Key=self.key,
                Body=Payload(data=body),
            )
        else:
            if self._buf:
                self._send(bytes(self._buf))
            self._buf.clear()
            wait(self._futures)
            self._raise_failed()
            self.job.check()
            parts = [{"PartNumber": n, "ETag": self._etags[n]} for n in sorted(self._etags)]
            self.job.call(
                self.job.s3.complete_multipart_upload,
                Bucket=self.job.bucket,
                Key=self.key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": parts},
            )
        self._completed = True
        self._pool.shutdown(wait=True)

    def abort(self) -> None:
        """Stop, drop what is buffered, abort the multipart upload (best effort)."""
        self._discard = True
        self._buf.clear()
        self.job.abort.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._upload_id is not None and not self._completed:
            with contextlib.suppress(Exception):  # best effort
                self.job.s3.abort_multipart_upload(
                    Bucket=self.job.bucket, Key=self.key, UploadId=self._upload_id
                )
