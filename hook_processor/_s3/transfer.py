"""Internals shared by stage-in and publication: one job's context, the worker pool, error text.

A transfer is a flat list of *units* (one small file, one part of a large file, one hash) run on
one ThreadPoolExecutor that shares one engine (``engine.py``). No unit ever waits for another
unit, so the pool cannot deadlock; the unit that finishes a large file's last part finalises it.
"""

from __future__ import annotations

import collections
import ctypes
import itertools
import random
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sized
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

import urllib3.exceptions
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    FlexibleChecksumError,
    IncompleteReadError,
    ReadTimeoutError,
    ResponseStreamingError,
)

from hook_processor.errors import Cancelled, HookProcessorError, UserError

if TYPE_CHECKING:
    from hook_processor._progress import Progress
    from hook_processor._s3.engine import Engine, TransferSettings

CHUNK = 1024 * 1024  # bytes read from a file at a time
# Bytes read from a GET body at a time: below glibc's mmap threshold (MMAP_THRESHOLD, 1 MiB), so
# each read's buffer comes from memory malloc reuses, not from a fresh mmap that is page-faulted
# in and unmapped again (1 MiB reads cost a 1 GiB stage-in ~1 s more system CPU, BENCHMARKS.md).
READ_CHUNK = 256 * 1024
MIN_PART = 5 * 1024 * 1024  # S3's smallest non-last multipart part
MAX_PARTS = 10_000  # S3's largest part number
# A refused connection or a host name that does not resolve is not a slow network: it is
# answered at once and will not change in the next seconds. A few quick attempts cover a server
# that is just (re)starting; the standard policy's backoff would wait ~10 s for the same answer.
UNREACHABLE_ATTEMPTS = 3
# A 503 SlowDown (or another throttling answer) says "later", not "broken": a store throttles
# for seconds at a time, all requests at once. Counting attempts (5, with full-jitter backoff)
# can end a request's retries in under 2 s, inside one burst; throttled requests are retried for
# ``TransferSettings.throttle_seconds`` instead, with capped exponential backoff and equal jitter
# (never a near-zero wait), beyond the attempt count and outside the retry quota.
THROTTLE_FIRST_DELAY = 0.25
THROTTLE_MAX_DELAY = 5.0
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "EC2ThrottledException",
    }
)
QUEUED_PER_WORKER = 2  # units submitted to the pool at a time, per thread
# Upload bodies held in memory by the whole process (see Buffers), every job together: a
# per-job budget let two publications (PRIVATE and the zip, or the jobs of a service) add up.
BUFFER_BYTES = 40 * 1024 * 1024
# glibc's malloc serves a block above this from its own mmap, given back to the OS on free.
# Its default threshold is dynamic: after the first 8 MiB body is freed it rises to 32 MiB, so
# later bodies come from per-thread arenas (one per worker thread) that keep their pages: the
# peak RSS of a publication grew to ~300 MB with 64 MiB of bodies in flight (loaded bench).
MMAP_THRESHOLD = 1024 * 1024
_M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)

# Errors raised while reading a body after a 200 OK: botocore does not retry those, we do.
# FlexibleChecksumError is a body that arrived complete but corrupted (its CRC does not match the
# checksum the server stored): a transit fault like a reset, so it is retried too, not kept.
STREAM_ERRORS: tuple[type[BaseException], ...] = (
    FlexibleChecksumError,
    ReadTimeoutError,
    ResponseStreamingError,
    IncompleteReadError,
    ConnectionClosedError,
    ConnectionError,
)


# Error codes a store may give to a request whose flexible-checksum headers it does not support,
# whatever the status it answers them with.
CHECKSUM_CODES = frozenset(
    {
        "MissingContentLength",
        "InvalidArgument",
        "InvalidRequest",
        "InvalidDigest",
        "NotImplemented",
        "XAmzContentSHA256Mismatch",
        "UnsupportedChecksumAlgorithm",
    }
)


# What a store answers a body whose Content-MD5 or x-amz-checksum-* it computed otherwise.
DIGEST_MISMATCH_CODES = frozenset({"BadDigest"})


class Aborted(Exception):
    """Internal: another unit of the same job failed; stop quietly."""


class Job:
    """What every unit of one transfer shares: client, settings, counters, stop signals."""

    def __init__(
        self,
        s3: Engine,
        bucket: str,
        settings: TransferSettings,
        *,
        error: type[UserError],
        phase: str,
        cancel: threading.Event | None,
        progress: Progress | None,
    ) -> None:
        self.s3 = s3  # every S3 call of the job, on the engine chosen when it was created
        self.bucket = bucket
        self.settings = settings
        self.error = error
        self.phase = phase
        self.cancel = cancel
        self.abort = threading.Event()
        self.buffers = shared_buffers()
        self.retries = 0
        self._lock = threading.Lock()
        self._progress = progress
        self._progress_lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return self.s3.endpoint_url or "S3"

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def check(self) -> None:
        """A cancellation point: between files, parts and body chunks."""
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled(f"cancelled while {self.phase}")
        if self.abort.is_set():
            raise Aborted

    def cancelled(self) -> Cancelled:
        return Cancelled(f"cancelled while {self.phase}")

    def retried(self, n: int = 1) -> None:
        if n:
            with self._lock:
                self.retries += n

    def planned(self, files: int, nbytes: int | None) -> None:
        """The totals of this transfer, from the listing or the walk."""
        if self._progress is not None:
            with self._progress_lock:  # callers need not be thread-safe
                self._progress.start(files, nbytes)

    def arrived(self, nbytes: int) -> None:
        """``nbytes`` moved; negative to take back what a retried request had counted."""
        if self._progress is not None and nbytes:
            with self._progress_lock:
                self._progress(nbytes)

    def file_done(self) -> None:
        if self._progress is not None:
            with self._progress_lock:
                self._progress.file_done()

    def call(self, method: Callable[..., Any], **params: Any) -> Any:
        """Call one S3 operation and count botocore's retries, failed calls included."""
        try:
            response = method(**params)
        except ClientError as err:
            self.retried(_retry_attempts(err.response))
            raise
        self.retried(_retry_attempts(response))
        return response

    def fail(self, what: str, err: BaseException) -> UserError:
        """``what`` failed: a user-facing error with the endpoint and the underlying text."""
        if isinstance(err, ClientError | BotoCoreError):
            hint = self._checksum_hint(err)
            error = self.error(f"{what} at {self.endpoint}: {describe(err)}{hint}")
        else:
            error = self.error(f"{what}: {describe(err)}")
        error.retries = self.retries  # the result reports them
        return error

    def _checksum_hint(self, err: BaseException) -> str:
        """Say what to do about a checksum error: BadDigest is bytes corrupted on the way; name
        the switch when a store may have rejected boto3's default flexible checksums.

        Such stores answer 400 (InvalidArgument, XAmzContentSHA256Mismatch, ...), 411
        (MissingContentLength: a body sent aws-chunked for a checksum trailer) or 501
        (NotImplemented), with codes that rarely say "checksum"; the only fix is the switch.
        403 (credentials), 404, 409 and 412 (conditions) have causes of their own.
        """
        if not isinstance(err, ClientError):
            return ""
        status, code = http_status(err), error_code(err)
        if code in DIGEST_MISMATCH_CODES:
            # The store computed another checksum than the one sent with the bytes: they were
            # corrupted on the way (checked in both modes); switching checks off is no fix.
            return (
                "; the store received other bytes than their checksum says (corrupted on "
                "the way, nothing of them was kept): run again"
            )
        if self.settings.checksum == "when_required":
            return ""
        if status not in (400, 411, 501) and code not in CHECKSUM_CODES:
            return ""
        return (
            "; if this S3-compatible store does not support flexible checksums "
            "(x-amz-checksum-* headers), set HOOK_S3_CHECKSUM=when_required"
        )

    def unit(self, what: str, body: Callable[[], None]) -> Callable[[], None]:
        """Wrap ``body`` so that botocore and OS errors become this job's error naming ``what``."""

        def run() -> None:
            try:
                body()
            except (Aborted, HookProcessorError):
                raise
            except (ClientError, BotoCoreError, OSError, ValueError) as err:
                raise self.fail(what, err) from err

        return run

    def run(self, units: Iterable[Callable[[], None]]) -> None:
        """Run ``units`` on ``settings.concurrency`` threads; stop all at the first failure.

        ``units`` may be an iterator (made as they are submitted). Units are submitted in
        order, at most ``QUEUED_PER_WORKER`` per thread at a time (not
        all at once: the pool's queue and its futures stay small at any number of files), so a
        FIFO pool starts them in order (``upload._Multipart`` relies on it).

        Of several failures the one raised is the cause: failures are taken in the order of
        their units (not of the set of futures that ended together), and one that is only a
        consequence of another (:func:`consequence`) comes after every other.
        """
        todo = iter(units)
        first = next(todo, None)
        if first is None:
            self.check()
            return
        todo = itertools.chain([first], todo)
        count = len(units) if isinstance(units, Sized) else self.settings.concurrency
        workers = max(1, min(self.settings.concurrency, count))
        bound = QUEUED_PER_WORKER * workers
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hook-s3")
        pending: dict[Future[None], int] = {}  # each running unit's place in ``units``
        failed: list[tuple[int, BaseException]] = []
        submitted = 0
        try:
            while True:
                while len(pending) < bound and not self.abort.is_set():
                    unit = next(todo, None)
                    if unit is None:
                        break
                    pending[pool.submit(unit)] = submitted
                    submitted += 1
                if not pending:
                    break
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    index = pending.pop(future)
                    if not future.cancelled() and (err := future.exception()):
                        failed.append((index, err))
                if failed:
                    self.abort.set()  # the running units stop at their next check
        except BaseException:  # KeyboardInterrupt in the waiting thread: stop the workers too
            self.abort.set()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=self.abort.is_set())
        for future, index in pending.items():
            if future.done() and not future.cancelled() and (err := future.exception()):
                failed.append((index, err))
        if not failed:
            return
        failed.sort(key=lambda indexed: (consequence(indexed[1]), indexed[0]))
        errors = [err for _, err in failed]
        if self.cancel is not None and self.cancel.is_set():
            raise self.cancelled() from next(
                (e for e in errors if not isinstance(e, Cancelled | Aborted)), None
            )
        real = [e for e in errors if not isinstance(e, Aborted)]
        error = real[0] if real else self.error(f"{self.phase} stopped")
        if isinstance(error, HookProcessorError):
            error.retries = self.retries  # every unit has ended: all of them
        raise error


class Buffers:
    """The bytes of upload bodies held in memory, bounded by ``limit``: one instance for the
    whole process (:func:`shared_buffers`), whatever the number of jobs.

    A unit takes room before it reads a file or part and gives it back once done with the
    bytes; it waits while the room is taken or an earlier unit waits for room (first come,
    first served), unless it is ``urgent``: the next part that a
    file's in-order SHA-256 needs (``upload._Multipart``), which other parts of that file wait
    for while holding room. Such a part was started before them (FIFO pool), so it is running
    and, never waiting here (but for another urgent part already over ``limit``, which is
    running and ends), always ends: no job can deadlock. So the bodies held stay within
    ``limit`` plus one part. A body larger than ``limit`` waits for the whole budget and goes
    alone.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._room = threading.Condition()
        self._tickets = itertools.count()
        self._line: collections.deque[int] = collections.deque()  # the waiting, in arrival order

    def take(self, job: Job, nbytes: int, urgent: Callable[[], bool] = lambda: False) -> None:
        with self._room:
            ticket = next(self._tickets)
            self._line.append(ticket)
            try:
                while not self._may_take(ticket, nbytes, urgent):
                    job.check()
                    self._room.wait(0.1)
            finally:
                self._line.remove(ticket)
                self._room.notify_all()  # the next in line may fit now
            self.used += nbytes

    def _may_take(self, ticket: int, nbytes: int, urgent: Callable[[], bool]) -> bool:
        """Room is given in the order it was asked for: a unit that arrives later never takes
        the room an earlier one waits for. Without that order the parts of a large file that
        the pool started last took each room given back, then held it waiting for the in-order
        SHA-256 of the parts before them, which went one at a time as urgent parts (a trace of
        a 1 GiB publication: 1.3 parts in flight on average, of 5 that fit).

        An urgent part may go over the limit only while no other one is over it: at most one
        part beyond the budget, and that part is running, so it ends and gives back.
        """
        first = self._line[0] == ticket
        if first and (not self.used or self.used + nbytes <= self.limit):
            return True  # with nothing held, even a body larger than the limit goes (alone)
        return self.used <= self.limit and urgent()

    def give(self, nbytes: int) -> None:
        with self._room:
            self.used -= nbytes
            self._room.notify_all()


_shared: dict[tuple[type[Buffers], int], Buffers] = {}
_shared_lock = threading.Lock()


def shared_buffers() -> Buffers:
    """The process's one body budget (of BUFFER_BYTES), created with the first job; memory
    bodies come from large blocks that glibc gives back to the OS once freed (MMAP_THRESHOLD)."""
    with _shared_lock:
        key = (Buffers, BUFFER_BYTES)
        if key not in _shared:
            _return_large_blocks()
            _shared[key] = Buffers(BUFFER_BYTES)
        return _shared[key]


def _return_large_blocks() -> None:
    """Fix glibc's mmap threshold at MMAP_THRESHOLD (see there); elsewhere nothing to do."""
    if not sys.platform.startswith("linux"):
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt): nothing to tune
        return
    mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def describe(err: BaseException) -> str:
    """The underlying error's text: botocore messages and OS errors carry no credentials.

    A refused connection, a host name that does not resolve, a certificate that does not verify
    and a timeout are said in those words: botocore says "Could not connect to the endpoint URL"
    for the first two and "Connection was closed before we received a valid response" for a
    certificate the lean path's pool refused.
    """
    kind = cause(err)
    if kind == "refused":
        return "connection refused; check the endpoint URL and that the S3 server is running"
    if kind == "unresolved":
        return "its host name does not resolve (DNS lookup failed); check the endpoint URL"
    if kind == "certificate":
        return (
            f"the server's TLS certificate was not accepted ({_certificate_reason(err)}); "
            "if the store uses a private or self-signed certificate, set SSL_CERT_FILE "
            "(or AWS_CA_BUNDLE) to a file of the CA certificates that signed it"
        )
    if kind == "timeout":
        return f"timed out: {err}; check that the endpoint is reachable from here"
    if isinstance(err, OSError) and err.strerror:
        where = f": {err.filename}" if err.filename else ""
        return f"{err.strerror}{where}"
    return str(err) or type(err).__name__


# What a store answers a part of a multipart upload that it (or our abort) has already dropped.
DROPPED_UPLOAD_CODES = frozenset({"NoSuchUpload"})


def consequence(err: BaseException) -> bool:
    """Is ``err`` only the consequence of another unit's failure?

    A store may drop a multipart upload when one of its parts fails (rclone does, on a part's
    BadDigest), and our abort drops it too: the parts still in flight are then answered
    NoSuchUpload, sometimes before the failure that caused it is read. Alone, it is the error.
    """
    while err is not None and not isinstance(err, ClientError):
        err = err.__cause__  # type: ignore[assignment]
    return err is not None and error_code(err) in DROPPED_UPLOAD_CODES


def error_code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def http_status(err: ClientError) -> int:
    return int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def _retry_attempts(response: Any) -> int:
    try:
        return int(response.get("ResponseMetadata", {}).get("RetryAttempts", 0) or 0)
    except (AttributeError, TypeError, ValueError):
        return 0


def part_size_for(size: int, part_size: int) -> int:
    """The upload part size: at least S3's 5 MiB minimum, and few enough parts for ``size``."""
    chosen = max(part_size, MIN_PART)
    while -(-size // chosen) > MAX_PARTS:
        chosen *= 2
    return chosen


def ranges(size: int, part_size: int) -> list[tuple[int, int]]:
    """``(offset, length)`` of each part of an object of ``size`` bytes."""
    return [(off, min(part_size, size - off)) for off in range(0, size, part_size)]


def unreachable(err: BaseException) -> str | None:
    """``"refused"`` or ``"unresolved"`` when ``err`` comes from a connection refused or a host
    name that does not resolve, else None."""
    kind = cause(err)
    return kind if kind in ("refused", "unresolved") else None


def cause(err: BaseException) -> str | None:
    """What ``err`` comes from: ``"refused"``, ``"unresolved"``, ``"certificate"`` (TLS
    verification failed) or ``"timeout"``, in that order of precedence; else None.

    Looks through botocore's wrapper (``kwargs["error"]``), exceptions in ``args`` (urllib3's
    SSLError holds the ssl error there) and the ``__cause__`` chain: urllib3 raises
    NewConnectionError (a subclass of its ConnectTimeoutError!) from the OSError, botocore an
    EndpointConnectionError around that.
    """
    found = {_kind(e) for e in _chain(err)}
    return next(
        (k for k in ("refused", "unresolved", "certificate", "timeout") if k in found), None
    )


def _kind(err: BaseException) -> str | None:
    if isinstance(err, ConnectionRefusedError):
        return "refused"
    if isinstance(err, socket.gaierror):
        return "unresolved"
    if isinstance(err, ssl.SSLCertVerificationError):
        return "certificate"
    if isinstance(err, urllib3.exceptions.NewConnectionError):
        return None  # a ConnectTimeoutError by inheritance only: its cause says what it was
    if isinstance(err, TimeoutError | socket.timeout | urllib3.exceptions.TimeoutError):
        return "timeout"
    if type(err).__name__ in ("ConnectTimeoutError", "ReadTimeoutError"):  # botocore's
        return "timeout"
    return None


def _chain(err: BaseException) -> list[BaseException]:
    stack: list[BaseException] = [err]
    seen: dict[int, BaseException] = {}
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen[id(current)] = current
        wrapped = (
            getattr(current, "kwargs", {}).get("error")
            if isinstance(current, BotoCoreError)
            else None
        )
        stack += [
            e for e in (wrapped, current.__cause__, *current.args) if isinstance(e, BaseException)
        ]
    return list(seen.values())


def _certificate_reason(err: BaseException) -> str:
    for current in _chain(err):
        if isinstance(current, ssl.SSLCertVerificationError):
            return str(current.verify_message or current.reason or "certificate verify failed")
    return "certificate verify failed"


def throttled(status: int, code: str) -> bool:
    """Whether an answer asks the client to slow down (S3's SlowDown is a 503)."""
    return status == 503 or code in THROTTLING_CODES


def throttle_delay(attempt: int) -> float:
    """Seconds before attempt ``attempt + 1`` of a throttled request: half fixed, half random."""
    cap = min(THROTTLE_MAX_DELAY, THROTTLE_FIRST_DELAY * 2.0 ** (attempt - 1))
    return cap / 2 + random.random() * cap / 2


def throttle_wait(since: float, attempt: int, window: float) -> float | None:
    """The wait before the next attempt of a request throttled since ``since`` (monotonic), or
    None once the wait would end after ``window`` seconds of throttling."""
    delay = throttle_delay(attempt)
    if time.monotonic() - since + delay > window:
        return None
    return delay


def unreachable_delay(attempt: int) -> float:
    """Seconds before the next attempt after a refused connection: 0.1, then 0.2."""
    return 0.1 * attempt
