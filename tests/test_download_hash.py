"""The whole-object checksum of a large download, computed as its ranged parts land.

The parts land in any order and on any thread; the hash must see every byte once, in order,
and exactly one caller must be told that the file is complete (it verifies and commits).
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
from pathlib import Path

import pytest

from hook_processor._s3 import download
from hook_processor._s3.download import Remote, TempFiles, _BigFile
from hook_processor._s3.download_checks import WholeCheck


class _Job:
    def check(self) -> None:
        pass


def _landed_file(tmp_path: Path, size: int, part: int) -> tuple[_BigFile, bytes, list[int]]:
    data = os.urandom(size)
    remote = Remote("k/big.bin", size, '"x"', "big.bin")
    big = _BigFile(remote, tmp_path / "big.bin", -(-size // part))
    fd = big.open(TempFiles(tmp_path))
    os.pwrite(fd, data, 0)
    big.check = WholeCheck("MD5", hashlib.md5(data).hexdigest(), hashlib.md5())
    big._checked = True  # as the first hasher's HEAD would have decided
    return big, data, list(range(0, size, part))


@pytest.mark.parametrize("seed", range(5))
def test_parts_landing_in_any_order_on_many_threads_hash_every_byte_once(
    tmp_path: Path, seed: int
) -> None:
    size, part = 3 * 1024 * 1024 + 12345, 256 * 1024
    big, data, offsets = _landed_file(tmp_path, size, part)
    random.Random(seed).shuffle(offsets)
    told: list[int] = []
    start = threading.Barrier(8)

    def land(mine: list[int]) -> None:
        start.wait()
        for offset in mine:
            if big.landed(_Job(), offset, min(part, size - offset)):
                told.append(offset)

    threads = [threading.Thread(target=land, args=(offsets[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len(told) == 1  # one caller verifies and commits
    assert big._cursor == size and not big._landed
    big.check.verify(_Job(), big.remote)  # type: ignore[union-attr, arg-type]
    assert big.check.digest.hexdigest() == hashlib.md5(data).hexdigest()  # type: ignore[union-attr]


def test_a_corrupted_part_fails_the_check_with_the_object_named(tmp_path: Path) -> None:
    size, part = 1024 * 1024, 256 * 1024
    big, _, offsets = _landed_file(tmp_path, size, part)
    os.pwrite(big.fd, b"\x00", 300_000)  # one byte of the second part differs
    done = [big.landed(_Job(), o, part) for o in reversed(offsets)]
    assert done == [False, False, False, True]

    class _Named(_Job):
        def url(self, key: str) -> str:
            return f"s3://b/{key}"

    with pytest.raises(download.StagingError, match=r"s3://b/k/big\.bin: the downloaded bytes"):
        big.check.verify(_Named(), big.remote)  # type: ignore[union-attr, arg-type]


@pytest.mark.parametrize("part", [100_003, 5 * 1024 * 1024 + 3])
def test_parts_that_start_inside_a_page_are_hashed_from_their_first_byte(
    tmp_path: Path, part: int
) -> None:
    """The hash maps the file from a page boundary (mmap's offset must be one), a window at a
    time: a part that starts inside a page, or spans windows, is hashed byte for byte."""
    size = 3 * part + 7  # no part but the first starts on a page
    big, data, offsets = _landed_file(tmp_path, size, part)
    done = [big.landed(_Job(), o, min(part, size - o)) for o in offsets]
    assert done[-1] and not any(done[:-1])
    big.check.verify(_Job(), big.remote)  # type: ignore[union-attr, arg-type]
    assert big.check.digest.hexdigest() == hashlib.md5(data).hexdigest()  # type: ignore[union-attr]


def test_a_file_cut_short_under_the_hasher_is_an_error_not_a_crash(tmp_path: Path) -> None:
    """Reading a mapping past the end of its file kills the process (SIGBUS): a temporary file
    truncated by someone else is said as a staging error instead."""
    size, part = 1024 * 1024, 256 * 1024
    big, _, offsets = _landed_file(tmp_path, size, part)
    os.ftruncate(big.fd, size // 2)
    with pytest.raises(download.StagingError, match="could not read back what was written"):
        for o in offsets:
            big.landed(_Job(), o, part)
