"""The run's work dir: fresh input/ and output/ folders, and the staged input freed on failure.

Only folders this runtime created (the marker file says so) are ever emptied, and a symbolic
link is never followed nor removed. On the container's start-up path: stdlib only.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from hook_processor import _log
from hook_processor.errors import OptionsError

MARKER = ".hook-processor-workdir"


def prepare(work_dir: Path) -> tuple[Path, Path]:
    """Fresh input/ and output/ folders; only folders this runtime created are ever emptied.

    The work dir is the platform's configuration: whatever is wrong with it is exit 2 with the
    path and the problem, never a traceback. A symlink at input/, output/ or the marker is
    refused, not followed: staging through it would write, and emptying it delete, elsewhere.
    """
    try:
        return _prepare_unchecked(work_dir)
    except OSError as exc:
        problem = exc.strerror or str(exc)
        if isinstance(exc, NotADirectoryError):
            problem += " (a file is in the way on its path)"
        where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(work_dir) else ""
        raise OptionsError(
            f"HOOK_WORK_DIR {work_dir}: cannot be prepared: {problem}{where}; "
            "point HOOK_WORK_DIR at a folder this process can create and write"
        ) from None


def _prepare_unchecked(work_dir: Path) -> tuple[Path, Path]:
    if work_dir.exists() and not work_dir.is_dir():
        raise _error(work_dir, "is not a folder (a file is in the way)")
    work_dir.mkdir(parents=True, exist_ok=True)
    marker = work_dir / MARKER
    dirs = (work_dir / "input", work_dir / "output")
    for entry in (marker, *dirs):
        if entry.is_symlink():
            raise _error(
                work_dir,
                f"{entry.name} is a symbolic link (to {os.readlink(entry)}); hook-processor "
                "neither follows nor removes it: remove it or choose another HOOK_WORK_DIR",
            )
    for folder in dirs:
        if folder.exists() and not folder.is_dir():
            raise _error(work_dir, f"{folder.name} is not a folder")
        if folder.exists() and any(folder.iterdir()):
            if not marker.exists():
                raise OptionsError(
                    f"HOOK_WORK_DIR {work_dir}: {folder.name}/ already holds files that "
                    "hook-processor did not create; empty it or choose another HOOK_WORK_DIR"
                )
            shutil.rmtree(folder)
    marker.touch()
    for folder in dirs:
        folder.mkdir(exist_ok=True)
    return dirs


def free_staged_input(input_dir: Path) -> None:
    """Remove what a failed run staged into ``input_dir`` (a folder this runtime prepared)."""
    if input_dir.is_symlink() or not input_dir.is_dir():
        return  # refused by prepare(): never followed, never emptied
    for entry in input_dir.iterdir():
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except OSError as exc:
            _log.get_logger().warning("could not remove the staged input %s: %s", entry, exc)


def _error(work_dir: Path, problem: str) -> OptionsError:
    return OptionsError(f"HOOK_WORK_DIR {work_dir}: {problem}")
