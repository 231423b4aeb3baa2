"""A terminal that reports 0 columns (``script`` with no window) still gets a readable bar."""

from __future__ import annotations

import fcntl
import os
import select
import struct
import termios

import pytest
from tqdm import tqdm

from hook_processor._progress import _BAR_FORMAT, _width


@pytest.mark.parametrize(
    ("columns", "expected"), [(0, {"ncols": 80}), (120, {"dynamic_ncols": True})]
)
def test_a_zero_width_terminal_gets_80_columns(columns: int, expected: dict[str, object]) -> None:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    try:
        with os.fdopen(os.dup(slave), "w") as stream:
            assert _width(stream) == expected
            bar = tqdm(
                total=1000,
                file=stream,
                unit="B",
                desc="stage-in",
                bar_format=_BAR_FORMAT,
                postfix="1/1 files",
                **_width(stream),
            )
            bar.update(1000)
            bar.close()
        drawn = _read_all(master)
    finally:
        os.close(slave)
        os.close(master)
    assert "stage-in: 100%" in drawn and "1/1 files" in drawn, repr(drawn)


def _read_all(fd: int) -> str:
    """All that was written to the pty: one read returns only what has arrived at that moment
    (on a loaded machine, the first draw alone)."""
    chunks = []
    while select.select([fd], [], [], 1.0)[0]:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")
