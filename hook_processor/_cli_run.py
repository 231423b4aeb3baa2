"""``hook-processor run``: run a processor locally against S3 (embedded by default)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import IO

import click

from hook_processor import _progress, harness
from hook_processor._log import human_size
from hook_processor.cli import _option_pairs, command_error, fail, project_argument, project_from
from hook_processor.errors import Cancelled, UserError
from hook_processor.s3server import S3Server


@click.command("run", short_help="Run the processor locally on files, against S3.")
@project_argument
@click.option(
    "--input",
    "-i",
    "inputs",
    multiple=True,
    type=click.Path(path_type=Path),
    metavar="PATH",
    help="A file (keeps its name) or folder (its contents) to process. Repeatable.",
)
@click.option(
    "--output",
    "output_dir",
    required=True,
    metavar="DIR",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the published output is downloaded (emptied if a previous run wrote it).",
)
@click.option(
    "--option",
    "-o",
    "options",
    multiple=True,
    metavar="NAME=VALUE",
    help="One option (or HOOK_* setting); overrides the options file. Repeatable.",
)
@click.option(
    "--options-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Order body as POSTed to BatchOrder/OData.CSC.Order, or a {name: value} JSON object; "
    "its S3 endpoints, buckets and credentials are replaced by the local ones.",
)
@click.option(
    "--output-storage",
    metavar="[PRIVATE|TEMPORARY]",
    callback=lambda _c, _p, v: _storage(v),
    help="PRIVATE: objects under a prefix, with a manifest; TEMPORARY: a zip and a download link.",
)
@click.option(
    "--mode",
    type=click.Choice(harness.mode_names()),
    default="inprocess",
    show_default=True,
    help="inprocess: the fastest loop; subprocess: a child with only a container's environment; "
    "container: the project's image (built first when missing or out of date), as the service "
    "runs it.",
)
@click.option(
    "--image",
    metavar="IMAGE",
    help="With --mode container: run this image as it is, instead of the project's own build.",
)
@click.option(
    "--python-image",
    metavar="IMAGE",
    help="With --mode container: the Python image to build the base on when an image is built, "
    "e.g. an offline image from scripts/offline-python-image.sh (default: HOOK_PYTHON_IMAGE, "
    "else python_image in [tool.hook-processor], else python:3.11-slim).",
)
@click.option("--s3-endpoint", metavar="URL", help="Use this S3 store instead of the embedded one.")
@click.option("--s3-access-key", metavar="KEY", help="Access key for --s3-endpoint.")
@click.option("--s3-secret-key", metavar="KEY", help="Secret key for --s3-endpoint.")
@click.option(
    "--keep-server",
    is_flag=True,
    help="Leave the embedded S3 server running after the run (until Ctrl-C) to browse it.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result JSON instead of a summary.")
def run_command(
    project_dir: Path | None,
    project_option: Path | None,
    inputs: tuple[Path, ...],
    output_dir: Path,
    options: tuple[str, ...],
    options_file: Path | None,
    output_storage: str | None,
    mode: str,
    image: str | None,
    python_image: str | None,
    s3_endpoint: str | None,
    s3_access_key: str | None,
    s3_secret_key: str | None,
    keep_server: bool,
    as_json: bool,
) -> None:
    """Run the processor in PROJECT_DIR (or --project; default: the current folder) on local
    files.

    The inputs are uploaded to an embedded S3 server (moto, on 127.0.0.1), the processor runs
    exactly as the Hook service runs it (standard options, S3 over HTTP), and the published
    output is downloaded into --output. Exits with the runtime's exit code: 0 completed,
    2 bad options or project, 3 staging failed, 4 process() raised, 5 publication failed,
    6 cancelled.
    """
    project_dir = project_from(project_dir, project_option)
    endpoint = _endpoint(s3_endpoint, s3_access_key, s3_secret_key, keep_server)
    mode_options = {k: v for k, v in (("image", image), ("python_image", python_image)) if v}
    if mode_options and mode != "container":
        raise click.UsageError("--image and --python-image go with --mode container")
    stderr = sys.stderr
    option_pairs = _option_pairs(options)
    # Bars on a terminal, JSON events with HOOK_LOG_FORMAT=json (from the environment or -o).
    display = _progress.display_from_settings(stderr, {**os.environ, **option_pairs})
    log_stream: IO[str] = display.wrap(stderr) if display else stderr
    request = harness.RunRequest(
        output_dir=output_dir,
        project_dir=project_dir,
        inputs=list(inputs),
        options=option_pairs,
        options_file=options_file,
        output_storage=output_storage,
        mode=mode,
        mode_options=mode_options,
        endpoint=endpoint,
        keep_server=keep_server,
        progress=display.factory if display else None,
        log_stream=log_stream,
        notify=lambda line: _note(log_stream, line),
        handle_signals=True,  # Ctrl-C and SIGTERM: exit 6 naming the signal, never "Aborted!"
    )
    created = not output_dir.exists()
    try:
        outcome = harness.run(request)
    except (UserError, ModuleNotFoundError) as exc:
        if created:  # a run that stopped before it wrote anything leaves no empty folder behind
            _remove_if_empty(output_dir)
        if isinstance(exc, UserError):
            raise fail(exc) from None
        raise  # a missing dependency: the command group turns it into one Error line
    except Cancelled as exc:
        if display:
            display.close()
            display = None
        _note(log_stream, str(exc))
        sys.exit(int(exc.exit_code))
    finally:
        if display:
            display.close()
    try:
        if as_json:
            click.echo(json.dumps(outcome.result, indent=2, ensure_ascii=False))
        else:
            click.echo(_summary(outcome, endpoint is not None))
        if outcome.server is not None:
            _serve_until_interrupted(outcome.server)
    finally:
        outcome.stop_server()
    if outcome.exit_code != 0:
        message = str(outcome.result.get("StatusMessage") or outcome.status)
        raise command_error(message, outcome.exit_code)


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()  # only an empty folder goes


def _note(stream: IO[str], line: str) -> None:
    stream.write(f"hook-processor run: {line}\n")
    stream.flush()


def _endpoint(
    url: str | None, access: str | None, secret: str | None, keep: bool
) -> S3Server | None:
    if url is None:
        if access or secret:
            raise click.UsageError("--s3-access-key/--s3-secret-key go with --s3-endpoint")
        return None
    if not url.startswith(("http://", "https://")):
        raise click.BadParameter("must be an http:// or https:// URL", param_hint="--s3-endpoint")
    if (access is None) != (secret is None):
        raise click.UsageError("give both --s3-access-key and --s3-secret-key, or neither")
    if keep:
        raise click.UsageError(
            "--keep-server keeps the embedded server; it does not apply with --s3-endpoint"
        )
    return S3Server(url, access or "", secret or "")


def _storage(value: str | None) -> str | None:
    if value is None or value.strip().upper() in ("PRIVATE", "TEMPORARY"):
        return value.strip().upper() if value else None
    raise click.BadParameter("must be PRIVATE or TEMPORARY", param_hint="--output-storage")


def _summary(outcome: harness.Outcome, own_store: bool) -> str:
    result = outcome.result
    status = outcome.status
    signal_name = f"{outcome.signal}; " if outcome.signal and status == "cancelled" else ""
    lines = [f"hook-processor run: {status} ({signal_name}exit code {outcome.exit_code})"]
    if status == "completed":
        lines[0] += f": {result.get('StatusMessage', '')}"
    timings = result.get("Timings") or {}
    if timings:
        lines.append("  phases   " + ", ".join(f"{k} {v:.2f} s" for k, v in timings.items()))
    inp, out = result.get("Input") or {}, result.get("Output") or {}
    lines.append(f"  input    {_count(inp.get('Files', 0))} ({human_size(inp.get('Bytes', 0))})")
    storage = result.get("OutputStorage") or "?"
    if outcome.published:
        size = human_size(out.get("Bytes", 0))
        lines.append(f"  output   {_count(out.get('Files', 0))} ({size}), {storage}")
    state = "" if own_store else ", kept running" if outcome.server else " (embedded, stopped)"
    lines.append(f"  mode     {outcome.mode}")
    lines.append(f"  S3       {outcome.endpoint_url}{state}")
    if outcome.replaced_options:
        lines.append(f"  replaced {', '.join(outcome.replaced_options)} (from --options-file)")
    where = _shown(outcome.output_dir)
    if outcome.published:
        extra = [p.name for p in (outcome.manifest, outcome.archive) if p]
        note = f" (and {', '.join(extra)})" if extra else ""
        lines.append(f"  outputs  {where}: {_listing(outcome.files)}{note}")
    elif outcome.files:
        lines.append(
            f"  outputs  {where}: NOT published; what process() wrote before the failure: "
            + _listing(outcome.files)
        )
    else:
        lines.append("  outputs  none")
    lines.append(f"  result   {where}{harness.RESULT_FILE}")
    return "\n".join(lines)


def _serve_until_interrupted(server: S3Server) -> None:
    click.echo(
        "\nThe embedded S3 server is still running (local, fixed credentials; not secrets):\n"
        f"  endpoint    {server.endpoint_url}\n"
        f"  access key  {server.access_key}\n"
        f"  secret key  {server.secret_key}\n"
        f"  buckets     {harness.INPUT_BUCKET}, {harness.OUTPUT_BUCKET}, "
        f"{harness.TEMPORARY_BUCKET}\n"
        f"  e.g.        aws --endpoint-url {server.endpoint_url} "
        f"s3 ls s3://{harness.OUTPUT_BUCKET}/ --recursive\n"
        "Press Ctrl-C to stop it."
    )

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        click.echo("stopped the embedded S3 server", err=True)


def _listing(files: dict[str, Path], limit: int = 8) -> str:
    names = list(files)
    shown = ", ".join(names[:limit])
    return (
        shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "") or "no files"
    )


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd())) + "/"
    except ValueError:
        return str(path) + "/"


def _count(n: int) -> str:
    return f"{n} file" + ("" if n == 1 else "s")
