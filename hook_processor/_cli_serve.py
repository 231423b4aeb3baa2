"""``hook-processor serve``: the Hook's order service on this machine (hook_processor.service)."""

from __future__ import annotations

import importlib
import logging
import os
import sys
from pathlib import Path

import click

from hook_processor.cli import command_error
from hook_processor.errors import ExitCode, UserError

DEFAULT_DATA_DIR = Path(".hook-serve")
DEFAULT_PORT = 8080
MODES = ("inprocess", "subprocess", "container")
EXECUTORS = ("local", "dask")
DASK_KEY = "HOOK_DASK_KEY"


@click.command("serve", short_help="Serve your processors as a local Hook order service.")
@click.argument(
    "project_dirs",
    nargs=-1,
    metavar="[PROJECT_DIR]...",
    type=click.Path(path_type=Path),
)
@click.option(
    "--image",
    "images",
    multiple=True,
    metavar="IMAGE",
    help="A built processor image (read from its labels) to serve as a Workflow. Repeatable.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="Port to listen on; 0 picks a free one (printed at start).",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_DATA_DIR,
    show_default=True,
    help="Where the orders (SQLite), item logs and run folders are kept across restarts.",
)
@click.option("--s3-endpoint", metavar="URL", help="Use this S3 store instead of the embedded one.")
@click.option("--s3-access-key", metavar="KEY", help="Access key for --s3-endpoint.")
@click.option("--s3-secret-key", metavar="KEY", help="Secret key for --s3-endpoint.")
@click.option(
    "--mode",
    type=click.Choice(MODES),
    default="subprocess",
    show_default=True,
    help="How an order item runs: inprocess (a thread), subprocess (`hook-processor exec`, as a "
    "container would), container (the processor's image).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 256),
    default=None,
    help="Order items run at once. Default: 1; with --executor dask, the threads of the "
    "workers connected at the start (a Gateway cluster: 2 workers).",
)
@click.option(
    "--executor",
    type=click.Choice(EXECUTORS),
    default="local",
    show_default=True,
    help="Where order items run: local (this machine, in --mode) or dask (tasks on a Dask "
    "cluster: --dask-scheduler or --dask-gateway; HOOK_DASK_KEY in serve's and the workers' "
    "environment).",
)
@click.option(
    "--dask-scheduler",
    metavar="tcp://HOST:PORT",
    help="With --executor dask: the address of a running Dask scheduler.",
)
@click.option(
    "--dask-gateway",
    metavar="URL",
    help="With --executor dask: a Dask Gateway (as DEDL runs); a new cluster is made there. "
    "Auth: HOOK_DASK_GATEWAY_TOKEN (a bearer token, e.g. your DESP access token), else "
    "dask_gateway's configured auth.",
)
@click.option(
    "--users",
    "users_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help='Only these users get a token: a JSON object {"user": "password", ...}. '
    "Default: any user name and password. With it the dashboard asks for a login.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON line (token_url, service_root, s3_endpoint, s3_access_key, "
    "s3_secret_key, data_dir) once requests are accepted; logs go to stderr.",
)
def serve_command(
    project_dirs: tuple[Path, ...],
    images: tuple[str, ...],
    host: str,
    port: int,
    data_dir: Path,
    s3_endpoint: str | None,
    s3_access_key: str | None,
    s3_secret_key: str | None,
    mode: str,
    concurrency: int | None,
    executor: str,
    dask_scheduler: str | None,
    dask_gateway: str | None,
    users_file: Path | None,
    as_json: bool,
) -> None:
    """Serve each PROJECT_DIR (and --image) as a Workflow of a local Hook order service, with
    the built-in odp-test workflow: a token endpoint like the Hook's Keycloak, the OData API
    under /odata/v1/ and an order dashboard at / (no login on a loopback address without
    --users), orders kept in SQLite under --data-dir.

    Ctrl-C (or SIGTERM) stops it: running items are cancelled and recorded so, exit 0. Bad
    arguments (a folder that is no project, an image without labels, a port in use) exit 2.
    """
    from hook_processor.service import server

    if s3_endpoint is None and (s3_access_key or s3_secret_key):
        raise click.UsageError("--s3-access-key and --s3-secret-key go with --s3-endpoint")
    if s3_endpoint is not None and not (s3_access_key and s3_secret_key):
        raise click.UsageError("--s3-endpoint needs --s3-access-key and --s3-secret-key")
    _check_executor(executor, dask_scheduler, dask_gateway)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(message)s")
    settings = server.ServeSettings(
        projects=project_dirs,
        images=images,
        host=host,
        port=port,
        data_dir=data_dir,
        s3_endpoint=s3_endpoint,
        s3_access_key=s3_access_key,
        s3_secret_key=s3_secret_key,
        mode=mode,
        concurrency=concurrency,
        users_file=users_file,
        executor=executor,
        dask_scheduler=dask_scheduler,
        dask_gateway=dask_gateway,
        dask_key=os.environ.get(DASK_KEY) if executor == "dask" else None,
    )

    def announce(started: server.Started) -> None:
        text = started.json_line() if as_json else started.text()
        click.echo(text)
        sys.stdout.flush()

    try:
        code = server.serve(settings, on_started=announce)
    except UserError as exc:
        # Everything that stops serve before it listens is the user's to fix: exit 2.
        raise command_error(str(exc), ExitCode.BAD_OPTIONS) from None
    sys.exit(code)


def _check_executor(executor: str, scheduler: str | None, gateway: str | None) -> None:
    """The --executor dask flags go together (usage errors, exit 2)."""
    ctx = click.get_current_context()
    if executor != "dask":
        for flag, value in (("--dask-scheduler", scheduler), ("--dask-gateway", gateway)):
            if value:
                raise click.UsageError(f"{flag} goes with --executor dask")
        return
    if ctx.get_parameter_source("mode") is not click.core.ParameterSource.DEFAULT:
        raise click.UsageError(
            "--mode is the local executor's; with --executor dask each item runs as "
            "`hook-processor exec` in a child process of a Dask worker"
        )
    if bool(scheduler) == bool(gateway):
        raise click.UsageError(
            "--executor dask needs one of --dask-scheduler tcp://HOST:PORT (a running "
            "`dask scheduler`) or --dask-gateway URL"
        )
    if scheduler and "://" not in scheduler:
        raise click.UsageError(
            f"--dask-scheduler {scheduler}: give the scheduler's address as tcp://HOST:PORT"
        )
    for module in ("distributed", "cryptography", *(("dask_gateway",) if gateway else ())):
        try:
            importlib.import_module(module)
        except ImportError:
            raise click.UsageError(
                f"--executor dask needs the Python module {module}, which is not installed "
                "here; install the dask extra: pip install 'hook-processor[dask]'"
            ) from None
    make = "make one with `python -m hook_processor.service.dask_executor`"
    if not os.environ.get(DASK_KEY):
        raise click.UsageError(
            f"--executor dask needs {DASK_KEY} in the environment of serve and of every Dask "
            f"worker (it seals the items' options in the task graph); {make}"
        )
    from hook_processor.service.dask_executor import check_key

    try:
        check_key(os.environ[DASK_KEY])
    except ValueError as exc:
        raise click.UsageError(f"{DASK_KEY} is {exc}; {make}") from None
