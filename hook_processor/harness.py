"""The local harness: run a processor on your machine the way the Hook service runs it.

::

    from hook_processor import harness

    outcome = harness.run(harness.RunRequest(
        project_dir=Path("examples/hello_world"),
        inputs=[Path("examples/hello_world/sample/input")],
        output_dir=Path("out"),
    ))
    outcome.exit_code, outcome.result["Status"], outcome.files

One run: S3 (an embedded moto server on 127.0.0.1 unless an endpoint is given) -> the option
set (the standard options pointing at that S3; an order body's endpoints, buckets and credentials
replaced, every other option kept) -> the mode's check, before any data moves (the project
loads, the options pass the runtime's validation, the container engine answers and the image is
built) -> buckets -> upload the inputs -> a *mode* runs the runtime -> what was published is
downloaded into ``output_dir`` -> :class:`Outcome`. A run the check refuses returns exit 2 with
the runtime's message, and nothing was uploaded.

Modes (:data:`MODES`): ``inprocess`` calls :func:`hook_processor.runtime.run` with an explicit
environment; ``subprocess`` runs ``python -m hook_processor exec`` with only the environment a
container would get. A mode is a function ``PreparedRun -> ModeResult`` registered by name with
:func:`register_mode` (or a ``"module:function"`` entry of :data:`MODES` in ``_modes.py``,
imported only when chosen): that is where ``container`` slots in, using
:func:`forwarded_environment` for the proxy/CA variables.

Library code: never prints or exits. A problem the user can fix before the run raises a
:class:`~hook_processor.errors.UserError`; a run that fails returns the runtime's exit code. The
embedded server is always stopped (unless ``keep_server``), and when nothing was published, what
``process()`` wrote is copied from the runtime's work folder into ``output_dir``. With
``handle_signals`` (the CLI), SIGINT/SIGTERM cancel the run: forwarded as themselves to the
mode's child or container (exit 6), or, outside the mode, :class:`~hook_processor.errors.Cancelled`
naming the signal and the step. In-process runs import their own project's code each time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from hook_processor import _harness_io, _interrupt, _preflight
from hook_processor import _harness_options as _opts
from hook_processor._harness_options import INPUT_BUCKET, OUTPUT_BUCKET, TEMPORARY_BUCKET
from hook_processor._modes import (
    MODES,
    Mode,
    ModeResult,
    PreparedRun,
    ProgressFactory,
    _read_result,
    container_environment,
    forwarded_environment,
    mode_names,
    register_mode,
    resolve_mode,
    resolve_preparation,
    run_inprocess,
    run_subprocess,
)
from hook_processor.errors import Cancelled, ExitCode, OptionsError
from hook_processor.s3server import EmbeddedS3, S3Server  # light: moto is imported by start()

__all__ = [
    "INPUT_BUCKET",
    "MODES",
    "OUTPUT_BUCKET",
    "RESULT_FILE",
    "TEMPORARY_BUCKET",
    "Mode",
    "ModeResult",
    "Outcome",
    "PreparedRun",
    "ProgressFactory",
    "RunRequest",
    "container_environment",
    "forwarded_environment",
    "mode_names",
    "register_mode",
    "resolve_mode",
    "run",
    "run_inprocess",
    "run_subprocess",
]

RESULT_FILE = _harness_io.MARKER  # the run's result JSON, kept in the output folder


@dataclasses.dataclass
class RunRequest:
    """What to run, on what, and where the outputs go."""

    output_dir: Path
    project_dir: Path | None = None
    """The project (pyproject.toml with [tool.hook-processor]); default: the current folder."""
    inputs: Sequence[Path] | Mapping[str, bytes] = ()
    """Files/folders (a file keeps its basename, a folder gives its contents) or {path: bytes}."""
    options: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """Like --option NAME=VALUE: override everything; HOOK_* names become platform settings."""
    options_file: Path | None = None
    """An order body (WorkflowOptions) or {name: value}; S3 endpoints/buckets/keys are replaced."""
    output_storage: str | None = None
    mode: str = "inprocess"
    server: S3Server | None = None
    """A scratch S3 server shared with others (the pytest plugin's); runs use their own prefixes."""
    endpoint: S3Server | None = None
    """The user's S3 (--s3-endpoint): nothing is created; --input goes where input_s3_path says."""
    keep_server: bool = False
    entrypoint: str | None = None
    """module:function to run instead of the project's entrypoint (HOOK_ENTRYPOINT)."""
    environ: Mapping[str, str] | None = None
    """The developer's environment (default os.environ): HOOK_* settings, PATH, proxy/CA vars."""
    work_dir: Path | None = None
    """The runtime's HOOK_WORK_DIR (default: a temporary folder, removed afterwards)."""
    progress: ProgressFactory | None = None
    log_stream: IO[str] | None = None
    """Where the run's log is echoed live (it is always captured in Outcome.logs)."""
    notify: Callable[[str], None] | None = None
    """Called with one line per harness step (server started, options replaced, inputs uploaded)."""
    mode_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """Extra settings for the mode (e.g. an image tag for a container mode)."""
    handle_signals: bool = False
    """SIGINT/SIGTERM cancel the run (exit 6) instead of raising KeyboardInterrupt; main thread
    only (``hook-processor run`` sets it)."""
    inputs_label: str = "--input"
    """How messages about ``inputs`` name them (the plugin: ``run_processor(inputs=...)``)."""
    options_label: str = "--option"
    """How messages name ``options`` (the plugin: ``run_processor(options=...)``)."""


@dataclasses.dataclass
class Outcome:
    """What a run gave: the runtime's exit code and result, and the outputs on disk."""

    exit_code: int
    result: dict[str, Any]
    output_dir: Path
    files: dict[str, Path]
    """{relative posix path: local file} of the outputs (manifest and zip excluded)."""
    logs: str
    endpoint_url: str
    mode: str
    published: bool
    """True: ``files`` were downloaded from the store; False: copied from the work folder."""
    manifest: Path | None = None
    archive: Path | None = None
    replaced_options: tuple[str, ...] = ()
    uploaded_files: int = 0
    server: S3Server | None = None
    """The embedded server, while it is kept running (keep_server)."""
    signal: str | None = None
    """The signal (SIGINT, SIGTERM) that cancelled the run, when the harness handled it."""
    _embedded: EmbeddedS3 | None = dataclasses.field(default=None, repr=False)

    @property
    def status(self) -> str:
        return str(self.result.get("Status", "failed"))

    def stop_server(self) -> None:
        """Stop a server kept with ``keep_server`` (no-op otherwise)."""
        if self._embedded is not None:
            self._embedded.stop()
            self._embedded = None


def run(request: RunRequest) -> Outcome:
    """Run one processor locally; see the module docstring."""
    from hook_processor.options import read_options_file

    environ = dict(os.environ if request.environ is None else request.environ)
    mode = resolve_mode(request.mode)
    user_options = {str(k): _opts.text(v) for k, v in request.options.items()}
    for name in user_options:
        if name.upper() in _opts.OWNED_SETTINGS:
            raise OptionsError(f"--option {name}: set by hook-processor run itself; remove it")
    entrypoint = (
        request.entrypoint
        or _opts.lookup(user_options, "HOOK_ENTRYPOINT")
        or _opts.lookup(environ, "HOOK_ENTRYPOINT")
    )
    project_dir = _check_project(request.project_dir, entrypoint)
    files = _harness_io.collect_inputs(request.inputs, request.inputs_label)
    if request.endpoint is None and not files:
        raise OptionsError(_harness_io.no_inputs(request.inputs, request.inputs_label))
    file_options, order = (
        read_options_file(request.options_file) if request.options_file else ({}, {})
    )
    output_dir = _harness_io.prepare_output_dir(request.output_dir)
    notify = request.notify or (lambda _line: None)

    with _interrupt.handling(request.handle_signals) as interrupt:
        step = _Step()
        embedded: EmbeddedS3 | None = None
        work_dir: Path | None = None
        handed_over = False
        try:
            server = request.endpoint or request.server
            if server is None:
                embedded = EmbeddedS3()
                server = embedded.start()
                notify(f"embedded S3 server at {server.endpoint_url}")
            work_dir = Path(request.work_dir or tempfile.mkdtemp(prefix="hook-run-")).resolve()
            outcome = _run_on(
                request,
                mode,
                server,
                embedded is not None,
                environ,
                user_options,
                file_options,
                order,
                entrypoint,
                project_dir,
                files,
                output_dir,
                work_dir,
                notify,
                interrupt,
                step,
            )
            if embedded is not None and request.keep_server:
                outcome.server, outcome._embedded, handed_over = server, embedded, True
            return outcome
        except (KeyboardInterrupt, Cancelled):
            if interrupt is None or interrupt.name is None:
                raise  # not a signal we handle: the caller's Ctrl-C stays a KeyboardInterrupt
            raise Cancelled(f"cancelled ({interrupt.name}) {step.name}") from None
        finally:
            if embedded is not None and not handed_over:
                embedded.stop()
            if request.work_dir is None and work_dir is not None:
                shutil.rmtree(work_dir, ignore_errors=True)


@dataclasses.dataclass
class _Step:
    """Where the harness is, for the message of a signal that stops it outside the mode."""

    name: str = "before the run started; nothing was uploaded or run"


def _run_on(
    request: RunRequest,
    mode: Mode,
    server: S3Server,
    own_server: bool,
    environ: dict[str, str],
    user_options: dict[str, str],
    file_options: Mapping[str, Any],
    order: Mapping[str, Any],
    entrypoint: str | None,
    project_dir: Path | None,
    files: list[_harness_io.InputFile],
    output_dir: Path,
    work_dir: Path,
    notify: Callable[[str], None],
    interrupt: _interrupt.Interrupt | None,
    step: _Step,
) -> Outcome:
    from hook_processor import storage
    from hook_processor.options import platform_settings

    scratch = request.endpoint is None
    # moto keeps one state per process, shared by every server it runs: fixed bucket names,
    # a prefix unique to the run.
    run_id = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)
    options, replaced, overrides = _opts.build_options(
        server, scratch, run_id, file_options, user_options, request.output_storage
    )
    for override in overrides:  # names and sources, never values
        notify(f"option {override}")
    if replaced:
        where = (
            "the embedded S3" if own_server else "the harness's S3" if scratch else "--s3-endpoint"
        )
        notify(f"options file: replaced {', '.join(replaced)} with {where} (values not shown)")
    storage_kind = str(options.get("output_storage", "PRIVATE")).strip().upper()
    env = _opts.run_env(environ, options, order, server, scratch, work_dir, project_dir, entrypoint)
    env.update(
        _opts.given_options(file_options, user_options, request.options_label)
    )  # unknown names: the runtime's
    input_bucket, input_prefix = _opts.input_location(options, files)
    prepared = PreparedRun(
        mode=request.mode,
        project_dir=project_dir,
        env=env,
        environ=environ,
        work_dir=work_dir,
        result_path=work_dir / "result.json",
        endpoint_url=server.endpoint_url,
        log_stream=request.log_stream,
        progress=request.progress,
        mode_options=request.mode_options,
        interrupt=interrupt,
    )
    with contextlib.ExitStack() as stack:
        try:
            # Everything that can be checked before data moves: the project, the options as the
            # runtime will read them, the container engine and image.
            ready = stack.enter_context(resolve_preparation(request.mode)(prepared))
        except _preflight.Refused as refused:
            notify("the runtime would refuse this run (exit 2): nothing was uploaded")
            return _refused(refused, request, server, options, order, project_dir, output_dir)
        # The runtime's own HOOK_* settings (the preflight above found them valid).
        settings = storage.transfer_settings(platform_settings(env))
        client = storage.make_client(_opts.target(options, "input", server), settings)
        if scratch:
            buckets = {input_bucket}
            if storage_kind == "TEMPORARY":
                buckets.add(TEMPORARY_BUCKET)
            elif options.get("s3_bucket") or options.get("output_s3_path"):
                buckets.add(_opts.output_bucket(options))
            for bucket in sorted(b for b in buckets if b):
                _harness_io.ensure_bucket(client.boto, bucket, server.endpoint_url)
        if files:
            step.name = "while uploading the inputs; nothing was run or published"
            uploaded = _harness_io.upload_inputs(
                client.boto,
                input_bucket,
                input_prefix,
                files,
                server.endpoint_url,
                request.progress("upload_input") if request.progress else None,
            )
            notify(
                f"uploaded {len(files)} input file{'s' if len(files) != 1 else ''} "
                f"({uploaded} bytes) to s3://{input_bucket}/{input_prefix}"
            )
        step.name = "while the processor ran"  # a mode that forwards signals never gets here
        done = mode(ready)
    step.name = "while downloading the outputs"
    result = done.result or _read_result(prepared.result_path) or _missing_result(done.exit_code)

    outcome = Outcome(
        exit_code=done.exit_code,
        result=result,
        output_dir=output_dir,
        files={},
        logs=done.logs,
        endpoint_url=server.endpoint_url,
        mode=request.mode,
        published=False,
        replaced_options=tuple(replaced),
        uploaded_files=len(files),
        signal=interrupt.name if interrupt is not None else None,
    )
    download = request.progress("download_output") if request.progress else None
    try:
        if done.exit_code == ExitCode.COMPLETED and result.get("OutputStorage") == "TEMPORARY":
            product = (result.get("Products") or [{}])[0]
            outcome.archive = _harness_io.download_temporary(
                product["DownloadLink"], product["Name"], output_dir, download
            )
            outcome.published = True
        elif done.exit_code == ExitCode.COMPLETED and result.get("Manifest"):
            out_target = _opts.target(options, "output", server)
            in_target = _opts.target(options, "input", server)
            out_client = (
                client if out_target == in_target else storage.make_client(out_target, settings)
            )
            _harness_io.download_private(
                out_client, result["Manifest"], output_dir, settings, download
            )
            outcome.manifest = output_dir / storage.MANIFEST_NAME
            outcome.published = True
    finally:
        if not outcome.published:
            _harness_io.copy_unpublished(work_dir / "output", output_dir)
        _harness_io.write_marker(output_dir, result)
    exclude = {
        p.relative_to(output_dir).as_posix() for p in (outcome.manifest, outcome.archive) if p
    }
    outcome.files = _harness_io.output_files(output_dir, exclude)
    return outcome


def _check_project(project_dir: Path | None, entrypoint: str | None) -> Path | None:
    from hook_processor.loader import read_project

    if project_dir is not None and not Path(project_dir).is_dir():
        raise OptionsError(
            f"project folder {project_dir} does not exist; give the folder of your processor "
            "(the one with pyproject.toml)"
        )
    root = Path(project_dir or ".").resolve()
    if not entrypoint:
        read_project(
            root
        )  # no pyproject.toml, no [tool.hook-processor], no entrypoint: one message
    return root


# --- helpers -------------------------------------------------------------------------------


def _refused(
    refused: _preflight.Refused,
    request: RunRequest,
    server: S3Server,
    options: Mapping[str, str],
    order: Mapping[str, Any],
    project_dir: Path | None,
    output_dir: Path,
) -> Outcome:
    """The outcome of a run the check refused, with the result the runtime would have written."""
    from hook_processor.loader import read_project
    from hook_processor.result import RunResult

    project = None
    if project_dir is not None and (project_dir / "pyproject.toml").is_file():
        with contextlib.suppress(OptionsError):
            project = read_project(project_dir)
    result = RunResult(
        exit_code=ExitCode.BAD_OPTIONS,
        status_message=str(refused),
        workflow_name=order.get("WorkflowName") or (project.name if project else None),
        order_id=order.get("Id"),
        order_name=order.get("Name"),
        output_storage=str(options.get("output_storage", "PRIVATE")).strip().upper(),
    )
    result.finished = time.time()
    data = result.to_json()
    _harness_io.write_marker(output_dir, data)
    return Outcome(
        exit_code=ExitCode.BAD_OPTIONS,
        result=data,
        output_dir=output_dir,
        files={},
        logs=str(refused) + "\n",
        endpoint_url=server.endpoint_url,
        mode=request.mode,
        published=False,
    )


def _missing_result(exit_code: int) -> dict[str, Any]:
    return {
        "Status": "failed",
        "StatusMessage": f"the run ended with exit code {exit_code} without writing a result; "
        "see its log",
        "ExitCode": exit_code,
    }
