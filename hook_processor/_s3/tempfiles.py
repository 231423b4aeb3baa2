"""The temporary files of one stage-in: each file is written under a temporary name in its final
folder, its size checked against the listing, then renamed into place; whatever was not renamed
is removed, so that no partial file is ever left under a final name.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
from pathlib import Path

from hook_processor.errors import StagingError

TEMP_MARK = ".hookpart-"
_TEMP_NAME_KEEP = 100  # bytes of the final name kept in a temporary name (with the mark: < 255)


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
