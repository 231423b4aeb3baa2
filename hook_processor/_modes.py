"""Modes of the local harness: how a prepared run is executed.

A mode is a function ``PreparedRun -> ModeResult``, registered by name in :data:`MODES` (a
function, or ``"module:function"`` imported only when the mode is chosen, so that a mode with
heavy dependencies such as docker costs nothing until then). ``inprocess`` calls the runtime
directly with an explicit environment; ``subprocess`` runs ``python -m hook_processor exec``
with only what a container would get (:func:`container_environment`). The container issue adds
``"container"`` here; :func:`forwarded_environment` gives it the proxy/CA variables.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import io
import json
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from hook_processor import _harness_io
from hook_processor.errors import ExitCode, OptionsError

ProgressFactory = Callable[[str], Callable[[int], None] | None]

# What an isolated run (subprocess, container) receives from the developer's environment.
_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY")
_CA_VARS = (
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "AWS_CA_BUNDLE",
)
_HOST_VARS = ("PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "SYSTEMROOT")


@dataclasses.dataclass(frozen=True)
class PreparedRun:
    """Everything a mode needs. ``env`` is the run's whole contract: the options as environment
    variables and the HOOK_* settings. HOOK_WORK_DIR / HOOK_RESULT_PATH / HOOK_PROJECT_DIR are
    host paths inside ``work_dir`` / the project; a container mode mounts them and rewrites these
    three. The mode must leave the result JSON at ``result_path`` (or return it) and what
    process() wrote in ``work_dir / "output"``."""

    mode: str
    project_dir: Path | None
    env: Mapping[str, str]
    environ: Mapping[str, str]
    work_dir: Path
    result_path: Path
    endpoint_url: str
    log_stream: IO[str] | None = None
    progress: ProgressFactory | None = None
    mode_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class ModeResult:
    exit_code: int
    result: dict[str, Any] | None  # None: read from PreparedRun.result_path
    logs: str


Mode = Callable[[PreparedRun], ModeResult]

# name -> function or "module:function" (imported only when chosen: docker costs nothing until
# then). Extension point: the container mode is "hook_processor._container_mode:run_container".
MODES: dict[str, Mode | str] = {
    "inprocess": "hook_processor._modes:run_inprocess",
    "subprocess": "hook_processor._modes:run_subprocess",
    "container": "hook_processor._container_mode:run_container",
}


def register_mode(name: str, mode: Mode | str) -> None:
    MODES[name] = mode


def mode_names() -> list[str]:
    """The modes available in this installation (a lazy mode whose module is missing is not)."""
    return [name for name, target in MODES.items() if _available(target)]


def _available(target: Mode | str) -> bool:
    if not isinstance(target, str):
        return True
    try:
        return importlib.util.find_spec(target.partition(":")[0]) is not None
    except ImportError:
        return False


def resolve_mode(name: str) -> Mode:
    target = MODES.get(name)
    if target is None or not _available(target):
        raise OptionsError(f"--mode {name}: unknown mode; choose one of {', '.join(mode_names())}")
    if isinstance(target, str):
        module, _, attribute = target.partition(":")
        target = getattr(importlib.import_module(module), attribute)
    return target


class _Tee(io.TextIOBase):
    """A text stream that keeps a copy and echoes to another stream."""

    def __init__(self, echo: IO[str] | None) -> None:
        self.buffer_ = io.StringIO()
        self.echo = echo
        self.lock = threading.Lock()

    def write(self, text: str) -> int:
        with self.lock:
            self.buffer_.write(text)
            if self.echo is not None:
                self.echo.write(text)
        return len(text)

    def flush(self) -> None:
        if self.echo is not None:
            self.echo.flush()


def run_inprocess(prepared: PreparedRun) -> ModeResult:
    """Call the runtime in this process with the run's environment as an explicit mapping."""
    from hook_processor import runtime
    from hook_processor.options import OptionSources

    tee = _Tee(prepared.log_stream)
    result = runtime.run(
        OptionSources(env=dict(prepared.env)),
        project_dir=prepared.project_dir,
        progress=prepared.progress,
        log_stream=tee,  # type: ignore[arg-type]
    )
    return ModeResult(
        int(result.exit_code),
        _read_result(prepared.result_path) or result.to_json(),
        tee.buffer_.getvalue(),
    )


def forwarded_environment(environ: Mapping[str, str], endpoint_url: str) -> dict[str, str]:
    """Proxy and CA variables of the developer's environment, as an isolated run needs them;
    a loopback S3 endpoint is added to NO_PROXY when a proxy is set."""
    upper = (*_PROXY_VARS, *_CA_VARS)
    env = {k: v for k, v in environ.items() if k.upper() in upper}
    if any(k.upper() in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY") for k in env) and (
        _harness_io.is_loopback_url(endpoint_url)
    ):
        for name in ("NO_PROXY", "no_proxy"):
            current = env.get(name, "")
            env[name] = ",".join(p for p in (current, "127.0.0.1,localhost,::1") if p)
    return env


def container_environment(prepared: PreparedRun) -> dict[str, str]:
    """Exactly what the subprocess gets: PATH/HOME/LANG, proxy/CA variables, the run's env."""
    host = {
        k: v
        for k, v in prepared.environ.items()
        if k.upper() in _HOST_VARS or k.upper().startswith("LC_")
    }
    return {
        **host,
        **forwarded_environment(prepared.environ, prepared.endpoint_url),
        "PYTHONUNBUFFERED": "1",  # as in Dockerfile.base
        **prepared.env,
    }


def run_subprocess(prepared: PreparedRun) -> ModeResult:
    """``python -m hook_processor exec`` in a child with only a container's environment."""
    child = subprocess.Popen(
        [sys.executable, "-m", "hook_processor", "exec"],
        env=container_environment(prepared),
        cwd=prepared.work_dir,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
        errors="replace",
    )
    assert child.stdout is not None
    lines: list[str] = []

    def pump() -> None:
        for line in child.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if prepared.log_stream is not None:
                prepared.log_stream.write(line)
                prepared.log_stream.flush()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        code = child.wait()
    except KeyboardInterrupt:  # the child got SIGINT too; make sure it stops, keep its result
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
        code = child.wait()
    reader.join()
    child.stdout.close()
    if code < 0:
        code = (
            ExitCode.CANCELLED
            if -code in (signal.SIGTERM, signal.SIGINT)
            else ExitCode.INTERNAL_ERROR
        )
    return ModeResult(int(code), None, "".join(lines))


def _read_result(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
