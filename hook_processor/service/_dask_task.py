"""One order item as a Dask task: what runs on a ``dask worker`` (``serve --executor dask``).

:func:`run_item` runs the runtime once, as ``python -m hook_processor exec`` in a child process
of the worker, never in the worker process itself: the child has its own exit code (the
runtime's, the item's status), gets SIGTERM on cancel and ends with exit 6 as a platform's pod
does, starts with clean ``sys.modules`` and logging (a worker runs many items, of several
projects, in several threads), and its output is the item's log. Linux stops the child when
its worker dies (``PR_SET_PDEATHSIG``): a killed worker leaves no orphan publishing beside the
rerun Dask starts elsewhere.

What reaches the worker (ours):

- the item's environment (options, secrets included, and the service's S3 keys) *sealed*:
  Fernet (AES-128-CBC + HMAC-SHA256, ``cryptography``) with the key in ``HOOK_DASK_KEY``, which
  ``serve`` and every worker get out of band, in their own environment. The task graph, the
  task keys, the scheduler's logs and dashboard hold only the ciphertext; the key never enters
  the graph and is never passed on to the child.
- :class:`TaskSpec`: nothing secret (the item's Id, the cancel event's name, the project).
- the project folder as a zip (``TaskSpec.project``), unpacked once per worker under its local
  directory: workers need ``hook-processor`` and the project's dependencies installed, not the
  service's files.

Cancel is a ``distributed.Event`` named in the spec, polled while the child runs; when the
scheduler cannot be reached any more (it went away), or nobody waits for the task any more (the
service was killed, or cancelled the future), the child is stopped too: nobody would record what
it did, and a rerun of the item must not meet it publishing. At its start the task logs a
``hook-processor-item`` event (the item, the worker's address) to the scheduler: the service
records where each attempt ran.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

from hook_processor.errors import ExitCode

KEY_VARIABLE = "HOOK_DASK_KEY"
TOPIC = "hook-processor-item"
PROJECT_LIMIT = 50 * 1024 * 1024  # a project zip above this is refused: it travels per task
_SKIPPED = {".git", ".venv", "venv", "__pycache__", ".hook-serve", ".pytest_cache", "node_modules"}
_POLL = 0.5  # seconds between looks at the cancel event
_GRACE = 30.0  # seconds a stopped child gets before SIGKILL

# The child sets its parent-death signal, then becomes the runtime (prctl survives execv).
_LAUNCH = (
    "import ctypes, os, signal, sys\n"
    "try:\n"
    "    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)\n"
    "except (AttributeError, OSError):\n"
    "    pass\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    os.kill(os.getpid(), signal.SIGTERM)\n"
    "os.execv(sys.executable, [sys.executable, '-m', 'hook_processor', 'exec'])\n"
)
# What the child gets of the worker's own environment (as a container would: _modes).
_HOST_VARS = ("PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR")


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """The item's task, without a secret (it is in the task graph as it is)."""

    key: str
    item_id: int
    cancel_event: str
    project: bytes | None = dataclasses.field(default=None, repr=False)
    project_digest: str | None = None
    endpoint_url: str = ""  # the service's S3 (not secret): NO_PROXY for a loopback one


def seal(key: str, env: dict[str, str]) -> bytes:
    from cryptography.fernet import Fernet

    return Fernet(key.encode()).encrypt(json.dumps(env).encode())


def check_key(key: str) -> None:
    """ValueError when ``key`` is not a Fernet key (its value is never in the message)."""
    from cryptography.fernet import Fernet

    try:
        Fernet(key.encode())
    except (ValueError, TypeError):
        raise ValueError("not a Fernet key (32 url-safe base64-encoded bytes)") from None


def new_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def project_zip(root: Path) -> tuple[bytes, str]:
    """The project folder as a zip (caches, virtual environments, .git left out) and its
    SHA-256; ValueError above :data:`PROJECT_LIMIT`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(root.rglob("*")):
            relative = path.relative_to(root)
            if _SKIPPED & set(relative.parts) or not path.is_file() or path.suffix == ".pyc":
                continue
            archive.write(path, relative.as_posix())
            if buffer.tell() > PROJECT_LIMIT:
                raise ValueError(
                    f"project folder {root} is more than {PROJECT_LIMIT // 2**20} MB zipped; "
                    "every Dask task carries it: move data out of the project folder"
                )
    data = buffer.getvalue()
    return data, hashlib.sha256(data).hexdigest()


def run_item(spec: TaskSpec, sealed: bytes) -> dict[str, Any]:
    """The Dask task: run the item once on this worker; ``{"worker", "exit_code", "result",
    "log"}`` (``result`` the runtime's JSON, or ours when the run could not start)."""
    from distributed import get_worker

    worker = get_worker()
    address = str(worker.address)
    with contextlib.suppress(Exception):  # the record of where it ran; the run matters more
        worker.log_event(TOPIC, {"key": spec.key, "item": spec.item_id, "worker": address})

    def outcome(code: int, result: dict[str, Any], log: str = "") -> dict[str, Any]:
        return {"worker": address, "exit_code": code, "result": result, "log": log}

    env = _unsealed(sealed, address)
    if isinstance(env, str):
        return outcome(ExitCode.BAD_OPTIONS, _failed(ExitCode.BAD_OPTIONS, env))
    cancel = _CancelWatch(spec.cancel_event, worker, spec.key)
    if cancel.requested():
        message = "cancelled before the run started on the worker; nothing was published"
        return outcome(ExitCode.CANCELLED, _failed(ExitCode.CANCELLED, message))
    base = Path(worker.local_directory)
    with tempfile.TemporaryDirectory(prefix=f"hook-item-{spec.item_id}-", dir=base) as tmp:
        work_dir = Path(tmp) / "work"
        work_dir.mkdir()
        result_path = Path(tmp) / "result.json"
        env.update(HOOK_WORK_DIR=str(work_dir), HOOK_RESULT_PATH=str(result_path))
        if spec.project is not None and spec.project_digest is not None:
            env["HOOK_PROJECT_DIR"] = str(_unpacked(spec.project, spec.project_digest, base))
        code, log, note = _run_child(env, work_dir, cancel, spec.endpoint_url)
        result = _read(result_path)
    if result is None:
        result = _failed(
            code,
            f"the run on Dask worker {address} ended with exit code {code} without writing a "
            f"result{note}; see its log",
        )
    result["ExitCode"] = code
    return outcome(code, result, log)


class _CancelWatch:
    """The item's cancel event; ``lost`` once the scheduler cannot be asked any more,
    ``released`` once nobody waits for the task (the service stopped or let it go: Dask
    marks a running task ``cancelled`` on its worker, and cannot stop its thread)."""

    def __init__(self, name: str, worker: Any, key: str) -> None:
        from distributed import Event

        self._event = Event(name)
        self._worker = worker
        self._key = key
        self.lost: str | None = None
        self.released = False

    def requested(self) -> bool:
        task = self._worker.state.tasks.get(self._key)
        if task is None or task.state in ("cancelled", "released", "forgotten"):
            self.released = True
            return True
        try:
            return bool(self._event.is_set())
        except Exception as exc:  # CommClosedError and the like: the scheduler is gone
            self.lost = type(exc).__name__
            return False


def _unsealed(sealed: bytes, address: str) -> dict[str, str] | str:
    """The item's environment, or the message saying why this worker cannot open it."""
    from cryptography.fernet import Fernet, InvalidToken

    key = os.environ.get(KEY_VARIABLE)
    if not key:
        return (
            f"the Dask worker {address} has no {KEY_VARIABLE} in its environment, so it cannot "
            f"open the item's options; start the workers with the service's {KEY_VARIABLE}"
        )
    try:
        env: dict[str, str] = json.loads(Fernet(key.encode()).decrypt(sealed))
    except (InvalidToken, ValueError, TypeError):
        return (
            f"the {KEY_VARIABLE} of Dask worker {address} is not the service's, so it cannot "
            f"open the item's options; give the workers the same {KEY_VARIABLE} as serve"
        )
    return env


def _unpacked(data: bytes, digest: str, base: Path) -> Path:
    """The project, unpacked once per worker and digest (a rename makes it appear whole)."""
    target = base / "hook-projects" / digest[:32]
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".unpacking-", dir=target.parent))
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        archive.extractall(staging)
    try:
        staging.rename(target)
    except OSError:  # another thread of this worker was first
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _child_environment(env: dict[str, str], endpoint_url: str) -> dict[str, str]:
    from hook_processor._modes import forwarded_environment

    host = {
        k: v
        for k, v in os.environ.items()
        if k.upper() in _HOST_VARS or k.upper().startswith("LC_")
    }
    return {
        **host,
        **forwarded_environment(os.environ, endpoint_url),
        "PYTHONUNBUFFERED": "1",
        **env,
    }


def _run_child(
    env: dict[str, str], work_dir: Path, cancel: _CancelWatch, endpoint_url: str
) -> tuple[int, str, str]:
    """Run ``hook-processor exec``; its exit code, its output, and a note on why it was
    stopped (empty when it was not)."""
    child = subprocess.Popen(
        # -S: the launcher needs only ctypes; the site setup is the exec'd runtime's to pay
        [sys.executable, "-S", "-c", _LAUNCH, str(os.getpid())],
        env=_child_environment(env, endpoint_url),
        cwd=work_dir,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
        errors="replace",
        start_new_session=True,  # a Ctrl-C to the worker's terminal is not the item's cancel
    )
    lines: list[str] = []

    def pump() -> None:
        assert child.stdout is not None
        lines.extend(child.stdout)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    note = ""
    stopped_at: float | None = None
    try:
        while True:
            try:
                child.wait(timeout=_POLL)
                break
            except subprocess.TimeoutExpired:
                pass
            if stopped_at is None:
                if cancel.requested():
                    note = (
                        " (stopped: nobody waits for it any more, the service let it go)"
                        if cancel.released
                        else " (cancelled)"
                    )
                elif cancel.lost:
                    note = f" (stopped: the Dask scheduler went away, {cancel.lost})"
                if note:
                    child.send_signal(signal.SIGTERM)
                    stopped_at = time.monotonic()
            elif time.monotonic() - stopped_at > _GRACE:
                child.kill()
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        reader.join(10)
        if child.stdout is not None:
            child.stdout.close()
    code = child.returncode
    if code < 0:
        code = ExitCode.CANCELLED if -code in (signal.SIGTERM, signal.SIGINT) else 1
    return int(code), "".join(lines), note


def _read(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _failed(code: int, message: str) -> dict[str, Any]:
    return {
        "Status": "cancelled" if code == ExitCode.CANCELLED else "failed",
        "StatusMessage": message,
        "ExitCode": int(code),
        "Products": [],
    }
