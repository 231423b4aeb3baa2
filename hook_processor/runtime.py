"""One run of a processor: options -> stage-in -> process() -> publish -> result.

:func:`run` never raises for a failure it can classify: it logs one clear message, writes the
result file and returns the :class:`RunResult` whose ``exit_code`` says what happened. Only the
CLI turns that into a process exit. This module is on the container's start-up path: it must not
import docker, jinja2, moto or test helpers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import hook_processor
from hook_processor import _log, _progress, _progress_relay, _publication, _work_dir
from hook_processor._log import human_size
from hook_processor._progress import ProgressFactory
from hook_processor.context import Context
from hook_processor.errors import (
    Cancelled,
    ExitCode,
    HookProcessorError,
    OptionsError,
    ProcessError,
)
from hook_processor.loader import Processor, ProjectConfig, load_processor, read_project
from hook_processor.options import SECRET_OPTIONS, OptionSources, RunConfig, load_config
from hook_processor.result import (
    COMPLETED_MESSAGE,
    EMPTY_OUTPUT_MESSAGE,
    RunResult,
    release_room,
    reserve_room,
    timed,
    write_result,
)
from hook_processor.stac import OutputCatalog

_PACKAGE_DIR = str(Path(hook_processor.__file__).resolve().parent)


@dataclasses.dataclass
class _Phase:
    """Which phase the run is in; the signal handler reads it."""

    name: str = "start"


def run(
    sources: OptionSources,
    *,
    project_dir: Path | None = None,
    cancel: threading.Event | None = None,
    progress: ProgressFactory | None = None,
    phase: _Phase | None = None,
    log_stream: IO[str] | None = None,
) -> RunResult:
    """Run the processor of ``project_dir`` once; always returns a result (and writes it).

    The run's log goes to ``log_stream`` (default: ``sys.stderr``); the in-process harness
    passes a stream that also keeps a copy. Without a ``progress`` factory, transfers show
    their progress as that stream allows (see :func:`_progress.display_for`).
    """
    cancel = cancel or threading.Event()
    phase = phase or _Phase()
    env = sources.env
    result = RunResult()
    began = time.perf_counter()
    log_format = _env(env, "HOOK_LOG_FORMAT", "text").lower()
    stream = log_stream or sys.stderr
    relay = _progress_relay.requested(env)
    display: _progress.Display | None = None
    if progress is None:
        # hook-processor run draws this child's bars itself: it asked for events (internal).
        relay_wanted = relay == _progress_relay.RELAY and log_format != "json"
        display = (
            _progress_relay.RelayDisplay(stream)
            if relay_wanted
            else _progress.display_for(stream, log_format)
        )
    if display is not None:
        stream, progress = display.wrap(stream), display.factory
    run_log = _log.configure(
        fmt=log_format,
        level=_level(_env(env, "HOOK_LOG_LEVEL", "INFO")),
        secrets=_raw_secrets(sources),
        stream=stream,
    )
    log = _log.get_logger()
    if relay is not None and relay != _progress_relay.RELAY:
        log.warning(
            "%s=%r ignored: it is set by hook-processor run only (to %r); unset it",
            _progress_relay.SETTING,
            relay,
            _progress_relay.RELAY,
        )
    result_path = _absolute(_default_result_path(env))
    input_dir: Path | None = None  # the staged input, freed when the run fails (see finally)
    try:
        with timed(result, "load"):
            project, processor = _load(env, project_dir)
            result.workflow_name = project.name if project else None
            config = load_config(sources, processor.options_model)
        run_log.add_secrets(config.secrets())
        if display is not None:
            display.min_seconds = config.platform.progress_min_seconds
        # Absolute from here on: process() may chdir, publication and the result must not care.
        work_dir = Path(os.path.abspath(config.platform.work_dir))
        config.platform.work_dir = work_dir
        result_path = _absolute(config.platform.result_path or work_dir / "result.json")
        config.platform.result_path = result_path
        input_dir = work_dir / "input"
        order = config.order
        result.workflow_name = result.workflow_name or order.workflow_name
        result.order_workflow_name = order.workflow_name
        result.order_id, result.order_name = order.order_id, order.order_name
        result.identifiers = order.identifiers
        result.output_storage = config.standard.output_storage
        result.unknown_options = [u.to_json() for u in config.unknown_options]
        for unknown in config.unknown_options:
            log.warning("%s: ignored (HOOK_STRICT_OPTIONS=1 makes it an error)", unknown)
        for override in config.overrides:  # names and sources, never values
            log.info("option %s", override)
        if project and order.workflow_name and order.workflow_name != project.name:
            log.warning(
                "the order's WorkflowName %r is not this project's name %r ([tool.hook-processor] "
                "name); the result and the manifest record WorkflowName %r and keep the order's "
                "as OrderWorkflowName",
                order.workflow_name,
                project.name,
                project.name,
            )
        log.info(
            "run of %s (%s) starts: output_storage=%s",
            result.workflow_name or "processor",
            processor.reference,
            config.standard.output_storage,
        )
        _execute(config, processor, result, cancel, phase, progress, project)
        result.exit_code = ExitCode.COMPLETED
        result.status_message = COMPLETED_MESSAGE if result.output_files else EMPTY_OUTPUT_MESSAGE
        if result.notes:
            result.status_message += " (" + "; ".join(result.notes) + ")"
        log.info("completed: %s", _summary(result))
    except HookProcessorError as exc:
        result.exit_code = exc.exit_code
        result.retries += exc.retries  # those of the transfer that failed
        result.status_message = _status_message(exc)
        _log_failure(log, exc)
    except KeyboardInterrupt:
        result.exit_code = ExitCode.CANCELLED
        result.status_message = "cancelled: interrupted; nothing was published"
        log.error(result.status_message)
    except Exception as exc:  # a bug in hook-processor: keep the whole traceback
        result.exit_code = ExitCode.INTERNAL_ERROR
        result.status_message = f"internal error in hook-processor: {exc.__class__.__name__}: {exc}"
        log.exception("internal error in hook-processor (please report it)")
    finally:
        # The outcome is decided: a signal from now on must not raise into the result's writing.
        phase.name = "finish"
        result.timings["total"] = time.perf_counter() - began
        result.finished = time.time()
        result.status_message = run_log.redact(result.status_message)
        release_room(result_path)
        if result.exit_code == ExitCode.STAGING_FAILED and input_dir is not None:
            _work_dir.free_staged_input(input_dir)  # useless now, and maybe what filled the disk
        try:
            try:
                write_result(result, result_path)
            except OSError as exc:
                if exc.errno != errno.ENOSPC or result.exit_code == ExitCode.COMPLETED:
                    raise
                if input_dir is not None:  # a failed run: its input is not needed any more
                    _work_dir.free_staged_input(input_dir)
                write_result(result, result_path)
            log.info("result written to %s", result_path)
        except OSError as exc:
            log.error("could not write the result to %s: %s", result_path, exc)
            if result.exit_code == ExitCode.COMPLETED:
                result.exit_code = ExitCode.PUBLISH_FAILED
        if display is not None:
            display.close()
        run_log.close()
    return result


def _execute(
    config: RunConfig,
    processor: Processor,
    result: RunResult,
    cancel: threading.Event,
    phase: _Phase,
    progress: ProgressFactory | None,
    project: ProjectConfig | None = None,
) -> None:
    from hook_processor import storage

    platform, std = config.platform, config.standard
    _work_dir.prepare(platform.work_dir)
    reserve_room(platform.result_path or platform.work_dir / "result.json")
    settings = storage.transfer_settings(platform)
    source = storage.S3Target(
        std.input_s3_endpoint_url,
        std.input_s3_access_key,
        std.input_s3_secret_key,
        platform.s3_region,
    )
    output = _publication.Output(config, result, settings, source, cancel)
    try:
        _stage_process_publish(config, processor, result, cancel, phase, progress, output, project)
    except _publication.AlreadyPublished:
        output.complete_rerun()
    finally:
        output.release()


def _stage_process_publish(
    config: RunConfig,
    processor: Processor,
    result: RunResult,
    cancel: threading.Event,
    phase: _Phase,
    progress: ProgressFactory | None,
    output: _publication.Output,
    project: ProjectConfig | None,
) -> None:
    from hook_processor import storage

    platform, std = config.platform, config.standard
    log = _log.get_logger()
    input_dir, output_dir = platform.work_dir / "input", platform.work_dir / "output"
    bucket, key = config.input_location
    phase.name = "stage_in"
    with timed(result, "stage_in"):
        log.info(
            "stage-in: %s from %s",
            std.input_s3_path,
            std.input_s3_endpoint_url or "default endpoint",
        )
        client = storage.make_client(output.source, output.settings)
        log.info("S3 engine: %s (%s)", client.name, client.choice)
        stats = storage.stage_in(
            client,
            bucket,
            key,
            input_dir,
            output.settings,
            cancel=cancel,
            progress=progress("stage_in") if progress else None,
            before_download=output.preflight,
        )
        result.input_files, result.input_bytes, result.retries = (
            stats.files,
            stats.bytes,
            stats.retries + output.retries,
        )
    log.info(
        "stage-in: %d files, %s in %.2f s",
        stats.files,
        human_size(stats.bytes),
        result.timings["stage_in"],
    )

    phase.name = "process"
    described = OutputCatalog(output_dir)
    try:
        with timed(result, "process"):
            _call_process(processor, config, input_dir, output_dir, cancel, described)
    finally:
        # A signal interrupts process() only: from here on the run notices ``cancel`` itself.
        phase.name = "publish"
    if cancel.is_set():
        raise Cancelled("cancelled after process(); nothing was published")

    with timed(result, "catalog"):
        _write_catalog(output_dir, described, result, project)

    with timed(result, "publish"):
        output.publish(output_dir, progress)
    if not result.output_files:
        log.warning(
            "process() wrote no files into output_dir: the published output is empty "
            "(%s); check that process() writes into the output_dir it is given",
            "a manifest without files" if std.output_storage == "PRIVATE" else "an empty zip",
        )


def _call_process(
    processor: Processor,
    config: RunConfig,
    input_dir: Path,
    output_dir: Path,
    cancel: threading.Event,
    described: OutputCatalog,
) -> None:
    kwargs: dict[str, Any] = {}
    if processor.options_model is not None:
        kwargs["options"] = config.workflow
    if processor.wants_context:
        order = config.order
        kwargs["context"] = Context(
            identifiers=order.identifiers,
            order_id=order.order_id,
            order_name=order.order_name,
            workflow_name=order.workflow_name,
            priority=order.priority,
            work_dir=config.platform.work_dir.resolve(),
            logger=_log.get_logger().getChild("process"),
            stac=described,
            input_dir=input_dir,
        )
    _log.get_logger().info("process: calling %s", processor.reference)
    try:
        processor.function(input_dir, output_dir, **kwargs)
    except Cancelled:
        raise
    except KeyboardInterrupt:
        raise Cancelled("cancelled during process(); nothing was published") from None
    except BaseException as exc:
        if cancel.is_set():
            raise Cancelled("cancelled during process(); nothing was published") from None
        error = ProcessError(f"process() raised {exc.__class__.__name__}: {exc}")
        error.author_traceback = author_traceback(exc)  # type: ignore[attr-defined]
        raise error from exc


def _write_catalog(
    output_dir: Path, described: OutputCatalog, result: RunResult, project: ProjectConfig | None
) -> None:
    """catalog.json of the outputs (STAC), before publication: the manifest, written last,
    lists it with the outputs; the TEMPORARY zip holds it."""
    import datetime

    log = _log.get_logger()
    if project is not None and not project.stac_catalog:
        if described.items:
            log.warning(
                "context.stac.add_item was called for %d items, but [tool.hook-processor] "
                "stac_catalog = false: no catalog.json is written",
                len(described.items),
            )
        return
    from hook_processor import _catalog

    name = result.workflow_name or "outputs"
    written = _catalog.write(
        output_dir,
        described,
        # The result's StartedDate, to its millisecond: an item's datetime is that very time.
        run_time=datetime.datetime.fromtimestamp(int(result.started * 1000) / 1000, datetime.UTC),
        catalog_id=f"{name}-{result.order_id}" if result.order_id else name,
        title=(project.display_name if project else None) or name,
    )
    if written is None:
        return
    if written.own:
        log.info(
            "catalog: process() wrote catalog.json itself (%d items): kept, and valid STAC "
            "(core schemas; extensions not checked offline)",
            written.items,
        )
    else:
        log.info("catalog: catalog.json with %d items (STAC 1.1)", written.items)


def author_traceback(exc: BaseException) -> str:
    """The traceback of the author's exception with hook-processor's own frames removed."""
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if not str(Path(f.filename).resolve()).startswith(_PACKAGE_DIR + os.sep)
    ]
    lines = ["Traceback (most recent call last):\n", *traceback.format_list(frames)]
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines).rstrip()


def _load(
    env: Mapping[str, str], project_dir: Path | None
) -> tuple[ProjectConfig | None, Processor]:
    root = project_dir or Path(_env(env, "HOOK_PROJECT_DIR", "") or ".")
    entrypoint = _env(env, "HOOK_ENTRYPOINT", "")
    project = None
    if entrypoint:
        if (root / "pyproject.toml").is_file():
            with contextlib.suppress(OptionsError):
                project = read_project(root)
    else:
        project = read_project(root)
        entrypoint = project.entrypoint
    return project, load_processor(entrypoint, search_path=root.resolve())


def _absolute(path: Path) -> Path:
    # abspath, not resolve(): a work dir reached through a mount's symlink keeps its name.
    return Path(os.path.abspath(path))


def install_signal_handlers(cancel: threading.Event, phase: _Phase) -> None:
    """SIGTERM/SIGINT: stop the run, publish nothing. Main thread only (the CLI calls it)."""
    handle = signal_handler(cancel, phase)
    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def signal_handler(cancel: threading.Event, phase: _Phase) -> Callable[[int, object], None]:
    """What a signal does to a run; the in-process harness calls it with the signal it got."""

    signalled: list[int] = []

    def handle(signum: int, _frame: object) -> None:
        # Re-entrant: a second signal can run this handler inside the first one's
        # ``cancel.set()``, whose lock it would wait for forever (a RecursionError under a storm
        # of signals). Only the first signal touches the event; a nested one returns at once.
        if not signalled:
            signalled.append(signum)
            cancel.set()
        # Transfers notice the event and clean up themselves; the author's code is interrupted.
        if phase.name == "process":
            name = signal.Signals(signum).name
            raise Cancelled(f"cancelled by {name} during process(); nothing was published")

    return handle


def ignore_signals_once_finished() -> None:
    """SIGTERM/SIGINT after the result is written: ignored, so the exit code stays the result's.

    Not a Python handler: the interpreter puts those back to the default while it shuts down,
    and a signal then (tens of ms of module teardown) would end the process with 143 although
    result.json says completed. Ignored signals stay ignored; SIGKILL still ends a stuck exit.
    """
    signals = {signal.SIGTERM, signal.SIGINT}
    # Blocked first, so that none trips the Python handler while it is being replaced; ignoring
    # discards them. The mask is the main thread's only: a signal that another thread (a
    # transfer library's) takes between CPython's last check and its SIG_IGN is reported as
    # "Signal 2 ignored due to race condition" with a traceback, for a signal ignored on purpose.
    previous = sys.unraisablehook

    def quiet(unraisable: Any) -> None:
        if not _ignored_signal(unraisable.exc_value):
            previous(unraisable)

    sys.unraisablehook = quiet
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    for signum in signals:
        signal.signal(signum, signal.SIG_IGN)


def _ignored_signal(error: BaseException | None) -> bool:
    return isinstance(error, OSError) and str(error).endswith("ignored due to race condition")


def _log_failure(log: Any, exc: HookProcessorError) -> None:
    if isinstance(exc, ProcessError):
        log.error("%s", exc, extra={_log.DETAILS: getattr(exc, "author_traceback", "")})
    else:
        log.error("%s", exc)


def _status_message(exc: HookProcessorError) -> str:
    return str(exc).strip()


def _env(env: Mapping[str, str], name: str, default: str) -> str:
    for key, value in env.items():
        if key.upper() == name:
            return value
    return default


def _level(value: str) -> str:
    value = value.strip().upper()
    return value if value in ("DEBUG", "INFO", "WARNING", "ERROR") else "INFO"


def _default_result_path(env: Mapping[str, str]) -> Path:
    explicit = _env(env, "HOOK_RESULT_PATH", "")
    if explicit:
        return Path(explicit)
    return Path(_env(env, "HOOK_WORK_DIR", "") or "hook-work") / "result.json"


def _raw_secrets(sources: OptionSources) -> list[str]:
    """Secret values as given, before validation, so that even an early failure cannot leak them."""
    found = []
    raw: dict[str, Any] = {k.lower(): v for k, v in sources.env.items()}
    raw.update({k.lower(): v for k, v in sources.cli.items()})
    for name, value in raw.items():
        if (
            name in SECRET_OPTIONS
            or name.startswith("hook_temporary_s3_")
            and name.endswith("_key")
        ) and isinstance(value, str):
            found.append(value)
    if sources.file is not None:
        with contextlib.suppress(Exception):
            from hook_processor.options import read_options_file

            options, _ = read_options_file(sources.file)
            found += [str(v) for k, v in options.items() if k.lower() in SECRET_OPTIONS and v]
    return found


def _summary(result: RunResult) -> str:
    return (
        f"{result.input_files} files ({human_size(result.input_bytes)}) in, "
        f"{result.output_files} files ({human_size(result.output_bytes)}) out"
    )
