"""Modes of the local harness: how a prepared run is executed.

A mode is a function ``PreparedRun -> ModeResult``, registered by name in :data:`MODES` (a
function, or ``"module:function"`` imported only when the mode is chosen, so that a mode with
heavy dependencies such as docker costs nothing until then). ``inprocess`` calls the runtime
directly with an explicit environment; ``subprocess`` runs ``python -m hook_processor exec``
with only what a container would get (:func:`container_environment`). The container issue adds
``"container"`` here; :func:`forwarded_environment` gives it the proxy/CA variables.

Before any data moves, the harness enters the mode's *preparation* (:data:`PREPARATIONS`, a
context manager ``PreparedRun -> PreparedRun``): it checks, where the run will happen, what the
runtime would refuse (:mod:`hook_processor._preflight`), and the container mode finds its engine
and builds its image there. In-process runs are isolated (:func:`isolated_imports`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import importlib.util
import io
import json
import signal
import subprocess
import sys
import sysconfig
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import IO, Any

from hook_processor import _harness_io, _progress_relay
from hook_processor._interrupt import Interrupt
from hook_processor._progress import ProgressFactory
from hook_processor.errors import ExitCode, OptionsError

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
    interrupt: Interrupt | None = None
    """Set when the harness handles SIGINT/SIGTERM: a mode forwards them to what it runs."""


@dataclasses.dataclass(frozen=True)
class ModeResult:
    exit_code: int
    result: dict[str, Any] | None  # None: read from PreparedRun.result_path
    logs: str


Mode = Callable[[PreparedRun], ModeResult]
Preparation = Callable[[PreparedRun], contextlib.AbstractContextManager[PreparedRun]]

# name -> function or "module:function" (imported only when chosen: docker costs nothing until
# then). Extension point: the container mode is "hook_processor._container_mode:run_container".
MODES: dict[str, Mode | str] = {
    "inprocess": "hook_processor._modes:run_inprocess",
    "subprocess": "hook_processor._modes:run_subprocess",
    "container": "hook_processor._container_mode:run_container",
}


# name -> the mode's preparation (same lazy form): entered before the uploads, left after the
# run. It raises _preflight.Refused for a run the runtime would refuse, a UserError for a problem
# of the mode itself (no engine), and gives the PreparedRun the mode then gets.
PREPARATIONS: dict[str, Preparation | str] = {
    "inprocess": "hook_processor._modes:prepare_inprocess",
    "subprocess": "hook_processor._modes:prepare_subprocess",
    "container": "hook_processor._container_mode:prepare_container",
}


def register_mode(
    name: str, mode: Mode | str, preparation: Preparation | str | None = None
) -> None:
    """Add a mode; without ``preparation`` nothing is checked before its uploads."""
    MODES[name] = mode
    if preparation is None:
        PREPARATIONS.pop(name, None)
    else:
        PREPARATIONS[name] = preparation


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
    mode: Mode = _imported(target)
    return mode


def resolve_preparation(name: str) -> Preparation:
    """The mode's preparation (a mode registered without one: nothing to check)."""
    target = PREPARATIONS.get(name)
    preparation: Preparation = _unprepared if target is None else _imported(target)
    return preparation


def _imported(target: Any) -> Any:
    if isinstance(target, str):
        module, _, attribute = target.partition(":")
        target = getattr(importlib.import_module(module), attribute)
    return target


@contextlib.contextmanager
def _unprepared(prepared: PreparedRun) -> Iterator[PreparedRun]:
    yield prepared


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


@contextlib.contextmanager
def prepare_inprocess(prepared: PreparedRun) -> Iterator[PreparedRun]:
    """Import the project here and validate its options; the import is kept for the run."""
    from hook_processor import _preflight

    with isolated_imports(prepared.project_dir, _entrypoint(prepared)):
        _preflight.check(prepared.env, prepared.project_dir)
        yield prepared


def run_inprocess(prepared: PreparedRun) -> ModeResult:
    """Call the runtime in this process with the run's environment as an explicit mapping."""
    from hook_processor import runtime
    from hook_processor.options import OptionSources

    tee = _Tee(prepared.log_stream)
    interrupt = prepared.interrupt
    cancel = interrupt.event if interrupt is not None else None
    phase = runtime._Phase()
    on_signal = runtime.signal_handler(cancel or threading.Event(), phase)
    forwarding = (
        interrupt.forwarding(lambda signum, _count: on_signal(signum, None))
        if interrupt is not None
        else contextlib.nullcontext()
    )
    with isolated_imports(prepared.project_dir, _entrypoint(prepared)), forwarding:
        result = runtime.run(
            OptionSources(env=dict(prepared.env)),
            project_dir=prepared.project_dir,
            cancel=cancel,
            phase=phase,
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


@contextlib.contextmanager
def prepare_subprocess(prepared: PreparedRun) -> Iterator[PreparedRun]:
    """The check in a child with the run's environment: the project is imported there only."""
    from hook_processor import _preflight

    # Its own session, like the run's child: a Ctrl-C on the terminal reaches only this process.
    child = subprocess.Popen(
        [sys.executable, "-m", "hook_processor._preflight"],
        env=container_environment(prepared),
        cwd=prepared.work_dir,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        errors="replace",
        start_new_session=True,
    )
    try:
        out, err = child.communicate()
    finally:
        if child.poll() is None:  # interrupted: never leave it running
            child.kill()
            child.wait()
    refused = _preflight.read_verdict(out)
    if refused is not None:
        raise refused
    if _preflight.MARKER not in out:
        _note(prepared, f"could not check the project before the upload ({_last_line(err)})")
    yield prepared


def run_subprocess(prepared: PreparedRun) -> ModeResult:
    """``python -m hook_processor exec`` in a child with only a container's environment.

    The child has its own session: a signal reaches it once, forwarded as itself (a second one
    kills it), never twice (from the terminal and from here).
    """
    env = container_environment(prepared)
    relay = relay_reader(prepared)
    if relay is not None:  # our display draws the child's bars: it writes events instead
        env[_progress_relay.SETTING] = _progress_relay.RELAY
    child = subprocess.Popen(
        [sys.executable, "-m", "hook_processor", "exec"],
        env=env,
        cwd=prepared.work_dir,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
        errors="replace",
        start_new_session=True,
    )
    assert child.stdout is not None
    lines: list[str] = []

    def show(text: str) -> None:
        lines.append(text)
        if prepared.log_stream is not None and text:
            prepared.log_stream.write(text)
            prepared.log_stream.flush()

    def pump() -> None:
        for line in child.stdout:  # type: ignore[union-attr]
            show(relay.feed(line) if relay is not None else line)
        if relay is not None:
            show(relay.finish())

    def forward(signum: int, count: int) -> None:
        if count == 1:
            child.send_signal(signum)
        else:
            child.kill()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    forwarding = (
        prepared.interrupt.forwarding(forward)
        if prepared.interrupt is not None
        else contextlib.nullcontext()
    )
    try:
        with forwarding:
            try:
                code = child.wait()
            except KeyboardInterrupt:  # no handler of ours (library use): Ctrl-C, forwarded
                child.send_signal(signal.SIGINT)
                code = child.wait()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    reader.join()
    child.stdout.close()
    if code < 0:
        code = (
            ExitCode.CANCELLED
            if -code in (signal.SIGTERM, signal.SIGINT)
            else ExitCode.INTERNAL_ERROR
        )
    return ModeResult(int(code), None, "".join(lines))


def relay_reader(prepared: PreparedRun) -> _progress_relay.ProgressReader | None:
    """The reader of the child's relayed progress, when the run shows progress as bars (see
    :mod:`hook_processor._progress_relay`); None: the child's output passes as it is."""
    if prepared.progress is None or not _progress_relay.wanted(prepared.progress, prepared.env):
        return None
    return _progress_relay.ProgressReader(prepared.progress)


# --- isolation of in-process runs -------------------------------------------------------------


@contextlib.contextmanager
def isolated_imports(project_dir: Path | None, entrypoint: str | None) -> Iterator[None]:
    """The project's own code for one in-process run, and the caller's imports back afterwards.

    Python caches modules by name: without this, a second project whose module is also called
    ``processor`` would run the first one's code. During the block the project's folders come
    first on ``sys.path`` and a cached module of the entrypoint's package that comes from
    elsewhere is set aside; afterwards ``sys.path`` is restored, the modules the block imported
    from the project (and of the entrypoint's package) are forgotten, and the set-aside ones
    come back. Nested blocks (the check, then the run) share the outer block's import.
    """
    root = Path(project_dir or ".").resolve()
    roots = [root]
    top = (entrypoint or "").partition(":")[0].split(".")[0]
    saved_path = list(sys.path)
    before = dict(sys.modules)
    hidden = {
        name: module
        for name, module in before.items()
        if _of_package(name, top) and _origins(module) and not _from_project(module, roots)
    }
    for name in hidden:
        del sys.modules[name]
    front = [str(p) for p in (root, root / "src") if p.is_dir()]  # the loader's own order
    sys.path[:] = front + [p for p in sys.path if p not in front]
    importlib.invalidate_caches()
    try:
        yield
    finally:
        sys.path[:] = saved_path
        for name, module in list(sys.modules.items()):
            if before.get(name) is module or _guarded(name):
                continue
            if name in hidden or _of_package(name, top) or _from_project(module, roots):
                del sys.modules[name]
        sys.modules.update(hidden)
        importlib.invalidate_caches()


def _entrypoint(prepared: PreparedRun) -> str | None:
    """module:function of the run (HOOK_ENTRYPOINT, else the project's), None if unreadable."""
    from hook_processor.loader import read_project

    value = next((v for k, v in prepared.env.items() if k.upper() == "HOOK_ENTRYPOINT" and v), None)
    if value:
        return value
    with contextlib.suppress(OptionsError):
        return read_project(Path(prepared.project_dir or ".")).entrypoint
    return None


def _guarded(name: str) -> bool:
    """Never set aside or forgotten: hook-processor itself and the standard library."""
    top = name.split(".")[0]
    return top == "hook_processor" or top in sys.stdlib_module_names


def _of_package(name: str, top: str) -> bool:
    return bool(top) and (name == top or name.startswith(top + ".")) and not _guarded(name)


def _origins(module: ModuleType) -> list[Path]:
    """The files (a module) or folders (a namespace package) a module was imported from."""
    file = getattr(module, "__file__", None)
    if file:
        return [Path(file)]
    return [Path(p) for p in getattr(module, "__path__", None) or () if isinstance(p, str)]


def _from_project(module: ModuleType, roots: Sequence[Path]) -> bool:
    """Imported from one of ``roots``, and not from a Python environment kept inside them."""
    origins = _origins(module)
    if not origins:
        return False
    for origin in origins:
        path = origin.resolve()
        if not any(path.is_relative_to(root) for root in roots):
            return False
        if any(path.is_relative_to(env) for env in _environments()) or {
            "site-packages",
            "dist-packages",
        } & set(path.parts):
            return False
    return True


def _environments() -> list[Path]:
    """A project folder may hold its .venv: what is installed there is not the project's code."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix}
    paths |= {sysconfig.get_path(name) for name in ("stdlib", "platstdlib", "purelib", "platlib")}
    return [Path(p).resolve() for p in paths if p]


def _note(prepared: PreparedRun, line: str) -> None:
    if prepared.log_stream is not None:
        prepared.log_stream.write(f"hook-processor run: {line}\n")
        prepared.log_stream.flush()


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else "no output"


def _read_result(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
