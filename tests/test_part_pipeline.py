"""The parts of a large file keep the body budget busy: room is given first come, first served,
and a part is hashed for the manifest before it is sent, so one slow part does not stop the rest.

Seen in a trace of a 1 GiB publication (8 MiB parts, 40 MiB of room): after the first five parts,
the parts the pool started last took each room given back and held it waiting for the in-order
SHA-256 of the parts before them; those went one at a time, 1.3 parts in flight on average.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path
from typing import Any

from hook_processor._s3 import upload, walk
from hook_processor._s3.engine import TransferSettings
from hook_processor._s3.transfer import Buffers, Job
from hook_processor.errors import PublishError

MiB = 1024 * 1024


def _job(s3: Any, settings: TransferSettings) -> Job:
    return Job(
        s3=s3,
        bucket="b",
        settings=settings,
        error=PublishError,
        phase="publishing",
        cancel=None,
        progress=None,
    )


def _until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.005)


def test_room_given_back_goes_to_the_unit_that_asked_first() -> None:
    """B asked for 2 before C asked for 1. When 1 is given back, C would fit, B not yet: C
    waits for B all the same (before, C took it, and a later part could overtake forever)."""
    room = Buffers(limit=2)
    job = _job(None, TransferSettings())
    order: list[str] = []
    room.take(job, 2)  # A holds everything

    def taker(name: str, nbytes: int) -> threading.Thread:
        def run() -> None:
            room.take(job, nbytes)
            order.append(name)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    b = taker("B", 2)
    time.sleep(0.2)  # B waits for room first
    c = taker("C", 1)
    time.sleep(0.2)  # then C
    room.give(1)
    time.sleep(0.3)  # C is woken (notify_all, and its own 0.1 s wait): it must not take the room
    assert order == [] and room.used == 1
    room.give(1)
    _until(lambda: order == ["B"], "B did not get the room given back")
    room.give(2)
    _until(lambda: order == ["B", "C"], "C did not get the room after B")
    b.join(5)
    c.join(5)
    assert room.used == 1


class _SlowFirstPart:
    """A store whose UploadPart of part 1 answers only when ``release`` is set, every other at
    once; it records which parts were sent while part 1 was in flight."""

    endpoint_url = "http://127.0.0.1:9"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.first_started = threading.Event()
        self.sent_meanwhile: list[int] = []
        self.parts: dict[int, bytes] = {}

    def create_multipart_upload(self, **_: Any) -> dict[str, Any]:
        return {"UploadId": "u1"}

    def upload_part(self, *, PartNumber: int, Body: Any, **_: Any) -> dict[str, Any]:  # noqa: N803
        self.parts[PartNumber] = bytes(Body.data)
        if PartNumber == 1:
            self.first_started.set()
            assert self.release.wait(10), "the test never let part 1 end"
        elif not self.release.is_set():
            self.sent_meanwhile.append(PartNumber)
            if len(self.sent_meanwhile) >= 10:
                self.release.set()  # enough seen: let part 1 end
        return {"ETag": f'"{hashlib.md5(Body.data).hexdigest()}"'}

    def complete_multipart_upload(self, **_: Any) -> dict[str, Any]:
        return {}

    def head_object(self, **_: Any) -> dict[str, Any]:
        return {"ContentLength": sum(len(p) for p in self.parts.values()), "ETag": '"x-16"'}


def test_a_slow_part_does_not_stop_the_parts_after_it(tmp_path: Path) -> None:
    """16 parts of 5 MiB, 40 MiB of room (8 parts): while part 1 is slow to send, the parts
    after it are sent, give their room back and let later parts in. Before, each sent part
    held its room until part 1 was hashed, so at most the 7 that fit beside it were sent."""
    src = tmp_path / "out"
    src.mkdir()
    data = os.urandom(16 * 5 * MiB)
    (src / "big.bin").write_bytes(data)
    store = _SlowFirstPart()
    settings = TransferSettings(concurrency=16, part_size=5 * MiB, multipart_threshold=5 * MiB)
    job = _job(store, settings)
    job.buffers = Buffers(40 * MiB)  # this test's own room, whatever the process's holds
    files = walk.walk(src)
    results = upload.Results(len(files))
    watchdog = threading.Timer(5, store.release.set)  # the old pipeline: part 1 ends anyway
    watchdog.start()
    try:
        job.run(upload.private_units(job, src, files, "run", results, []))
    finally:
        watchdog.cancel()
    assert len(store.sent_meanwhile) >= 10, store.sent_meanwhile
    assert b"".join(store.parts[n] for n in sorted(store.parts)) == data
    assert results.sha256(0) == hashlib.sha256(data).hexdigest()
