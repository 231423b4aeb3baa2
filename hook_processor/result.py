"""The result of a run: the JSON file the platform (or the harness) reads.

Field names follow the Hook API's PascalCase; ``Status`` uses its words (``completed``,
``failed``; ``cancelled`` from the ICD's JobStatus). The format is ours: see the README.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from hook_processor import __version__
from hook_processor._jsonstream import Lazy, pieces
from hook_processor.errors import ExitCode

COMPLETED_MESSAGE = "Processing finished successfully"  # the Hook API's own item message
# A run that completed but published nothing is not an error, yet nobody should miss it.
EMPTY_OUTPUT_MESSAGE = f"{COMPLETED_MESSAGE}, but process() wrote no output files"
RESULT_FORMAT = 1


def _utc(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


@dataclasses.dataclass
class RunResult:
    """Filled as the run goes; :meth:`to_json` is what lands in the result file."""

    exit_code: ExitCode = ExitCode.INTERNAL_ERROR
    status_message: str = ""
    workflow_name: str | None = None
    """The project's [tool.hook-processor] name (the order's WorkflowName without a project)."""
    order_workflow_name: str | None = None
    """The WorkflowName the order gave (None: it gave none)."""
    order_id: str | None = None
    order_name: str | None = None
    identifiers: tuple[str, ...] = ()
    output_storage: str | None = None
    # A Sequence: a publication's is a view that makes each product's dict when it is read.
    products: Sequence[dict[str, Any]] = dataclasses.field(default_factory=list)
    manifest: str | None = None
    input_files: int = 0
    input_bytes: int = 0
    output_files: int = 0
    output_bytes: int = 0
    retries: int = 0
    unknown_options: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    started: float = dataclasses.field(default_factory=time.time)
    finished: float | None = None
    notes: list[str] = dataclasses.field(default_factory=list)  # added to a completed message

    @property
    def status(self) -> str:
        if self.exit_code == ExitCode.COMPLETED:
            return "completed"
        if self.exit_code == ExitCode.CANCELLED:
            return "cancelled"
        return "failed"

    def to_json(self, *, lazy: bool = False) -> dict[str, Any]:
        """The result document; ``lazy``: its Products for :mod:`hook_processor._jsonstream`
        (made one at a time as they are written), else a list."""
        products = self.products
        data: dict[str, Any] = {
            "ResultFormat": RESULT_FORMAT,
            "Status": self.status,
            "StatusMessage": self.status_message,
            "ExitCode": int(self.exit_code),
            "WorkflowName": self.workflow_name,
            "OrderWorkflowName": self.order_workflow_name,
            "OrderId": self.order_id,
            "OrderName": self.order_name,
            "IdentifierList": list(self.identifiers),
            "OutputStorage": self.output_storage,
            "Products": Lazy(len(products), lambda: iter(products)) if lazy else list(products),
            "Manifest": self.manifest,
            "Input": {"Files": self.input_files, "Bytes": self.input_bytes},
            "Output": {"Files": self.output_files, "Bytes": self.output_bytes},
            "Retries": self.retries,
            "UnknownOptions": self.unknown_options,
            "Timings": {k: round(v, 4) for k, v in self.timings.items()},
            "StartedDate": _utc(self.started),
            "CompletedDate": _utc(self.finished) if self.finished else None,
            "HookProcessorVersion": __version__,
        }
        if self.output_storage == "TEMPORARY" and len(self.products) == 1:
            # Mirror the Hook API's order item: ProcessedName, ProcessedSize, DownloadLink.
            product = self.products[0]
            data["ProcessedName"] = product["Name"]
            data["ProcessedSize"] = product["Size"]
            data["DownloadLink"] = product.get("DownloadLink")
        return data


@contextlib.contextmanager
def timed(result: RunResult, name: str) -> Iterator[None]:
    """Record how long the block took as ``result.timings[name]`` (also when it raises)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        result.timings[name] = time.perf_counter() - start


def write_result(result: RunResult, path: Path) -> None:
    """Write the result atomically (temp file + rename), so a reader never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".result-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            # json.dump's text (indent=2), one product at a time (_jsonstream)
            for piece in pieces(result.to_json(lazy=True)):
                handle.write(piece)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


ROOM_BYTES = 256 * 1024  # held for the result beside it while the run may fill the disk


def _room_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.room")


def reserve_room(path: Path) -> None:
    """Hold ``ROOM_BYTES`` of disk beside the result file, given back just before it is written.

    A stage-in that fills the disk would otherwise leave no block for the result, and the
    platform would get no result at all ("No space left on device"). Best effort: a disk that
    is already full gets no room, and the run goes on.
    """
    room = _room_path(path)
    try:
        with open(room, "wb") as handle:
            handle.write(bytes(ROOM_BYTES))  # written, not sparse: the blocks are really taken
            handle.flush()
            os.fsync(handle.fileno())
    except OSError:
        room.unlink(missing_ok=True)


def release_room(path: Path) -> None:
    """Give back what :func:`reserve_room` held (nothing if it held nothing)."""
    with contextlib.suppress(OSError):
        _room_path(path).unlink(missing_ok=True)
