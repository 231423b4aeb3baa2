"""``hook-processor order``: submit, watch, download and cancel orders of a Hook service.

Credentials never come from the command line (they would be in the shell history and in ``ps``):
``DESP_USERNAME`` / ``DESP_PASSWORD`` from the environment (the DEDL tutorial's names), else a
prompt (the password hidden); or ``HOOK_ACCESS_TOKEN``, a bearer token obtained elsewhere (the
live service's DESP login is a browser-style flow, see hook-contract.md §1).

Exit codes (ORDER_EXIT in the README): 0 completed (or, without --wait, accepted); 2 bad
arguments or refused by the service (4xx, its message shown); 3 the service cannot be reached or
answered a server error; 4 the order failed (at least one item failed); 6 the order was
cancelled; 130 Ctrl-C while waiting (the order keeps running).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import click

from hook_processor.cli import _option_pairs, command_error
from hook_processor.errors import ExitCode, UserError

EXIT_FAILED = 4
EXIT_UNREACHABLE = 3
EXIT_CANCELLED = int(ExitCode.CANCELLED)
EXIT_INTERRUPTED = 130
_BY_OUTCOME = {"completed": 0, "failed": EXIT_FAILED, "cancelled": EXIT_CANCELLED}


def _endpoint_options(command: Any) -> Any:
    command = click.option(
        "--token-url",
        envvar="HOOK_TOKEN_URL",
        metavar="URL",
        help="The token endpoint (Keycloak password grant). Env: HOOK_TOKEN_URL.",
    )(command)
    return click.option(
        "--service",
        "service_url",
        envvar="HOOK_SERVICE_URL",
        required=True,
        metavar="URL",
        help="The service root, ending /odata/v1/. Env: HOOK_SERVICE_URL.",
    )(command)


@click.group("order", short_help="Submit, watch, download and cancel Hook orders.")
def order_group() -> None:
    """A client for a Hook order service: the live one or `hook-processor serve`.

    Credentials come from DESP_USERNAME and DESP_PASSWORD (else a prompt), or a ready token
    from HOOK_ACCESS_TOKEN; never from the command line. Exit codes: 0 completed, 2 bad
    arguments or refused by the service, 3 service unreachable, 4 failed, 6 cancelled.
    """


@order_group.command("submit", short_help="Submit an order; print its Id.")
@_endpoint_options
@click.option("--workflow", required=True, metavar="NAME", help="The Workflow's Name.")
@click.option(
    "--identifier",
    "identifiers",
    multiple=True,
    metavar="ID",
    help="An input product identifier (one order item each). Repeatable.",
)
@click.option(
    "--options-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="An order body (its WorkflowOptions, IdentifierList, Name, Priority) or a "
    "{name: value} JSON object.",
)
@click.option(
    "--option",
    "-o",
    "options",
    multiple=True,
    metavar="NAME=VALUE",
    help="One WorkflowOption, over the file's; sent as a number where the Workflow's option "
    "Type is int or float. Repeatable.",
)
@click.option("--priority", type=click.IntRange(1, 100), help="1-100, higher first.")
@click.option("--name", metavar="NAME", help="The order's Name.")
@click.option("--wait", is_flag=True, help="Wait until every item is finished, showing progress.")
@click.option("--interval", type=click.FloatRange(0.05), default=1.0, hidden=True)
def submit_command(
    service_url: str,
    token_url: str | None,
    workflow: str,
    identifiers: tuple[str, ...],
    options_file: Path | None,
    options: tuple[str, ...],
    priority: int | None,
    name: str | None,
    wait: bool,
    interval: float,
) -> None:
    """Submit an order (POST BatchOrder/OData.CSC.Order); print its Id on stdout."""
    from hook_processor import order_client

    pairs = _option_pairs(options)
    file_body = _load_body(options_file) if options_file else None
    client = _client(service_url, token_url)
    types = _call(lambda: client.option_types(workflow)) if pairs else {}
    body = order_client.order_body(
        workflow=workflow,
        name=name,
        identifiers=identifiers,
        file_body=file_body,
        options=pairs,
        priority=priority,
        types=types,
    )
    order = _call(lambda: client.submit(body))
    click.echo(order["Id"])
    if wait:
        _exit_with(_wait(client, order["Id"], interval))


@order_group.command("status", short_help="The order's status and its items'.")
@_endpoint_options
@click.argument("order_id")
@click.option("--wait", is_flag=True, help="Wait until every item is finished.")
@click.option("--json", "as_json", is_flag=True, help="Print the order and its items as JSON.")
@click.option("--interval", type=click.FloatRange(0.05), default=1.0, hidden=True)
def status_command(
    service_url: str,
    token_url: str | None,
    order_id: str,
    wait: bool,
    as_json: bool,
    interval: float,
) -> None:
    """The order's status and its items'. Exit code: 0 completed or still running, 4 failed,
    6 cancelled."""
    from hook_processor import order_client

    client = _client(service_url, token_url)
    items = _wait(client, order_id, interval) if wait else _call(lambda: client.products(order_id))
    order = _call(lambda: client.order(order_id))
    status = order_client.outcome(items)
    if as_json:
        click.echo(json.dumps({"Order": order, "Status": status, "Products": items}, indent=2))
    else:
        label = f" {order['Name']!r}" if order and order.get("Name") else ""
        click.echo(f"order {order_id}{label}: {status}")
        for item in items:
            click.echo(_item_line(item))
    _exit_with(status)


@order_group.command("products", short_help="The order's items as JSON.")
@_endpoint_options
@click.argument("order_id")
def products_command(service_url: str, token_url: str | None, order_id: str) -> None:
    """The order's items as JSON (BatchOrder(id)/Products)."""
    client = _client(service_url, token_url)
    click.echo(json.dumps(_call(lambda: client.products(order_id)), indent=2))


@order_group.command("download", short_help="Download the order's TEMPORARY products (zips).")
@_endpoint_options
@click.argument("order_id")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Where the zips go: output-<workflow>-<order>-<product>.zip, as the DEDL tutorial.",
)
def download_command(
    service_url: str, token_url: str | None, order_id: str, directory: Path
) -> None:
    """Download each completed TEMPORARY product ($value) of the order; print the paths."""
    client = _client(service_url, token_url)
    items = _call(lambda: client.products(order_id))
    order = _call(lambda: client.order(order_id)) or {}
    workflow = order.get("WorkflowName") or "order"
    ready = [i for i in items if i.get("Status") == "completed" and i.get("DownloadLink")]
    if not ready:
        states = ", ".join(f"{i.get('Id')}: {i.get('Status')}" for i in items) or "no items"
        raise command_error(
            f"order {order_id} has no completed product with a DownloadLink ({states}); "
            "PRIVATE output is in your bucket, and a running order can be waited for with "
            "`hook-processor order status --wait`",
            ExitCode.BAD_OPTIONS,
        )
    directory.mkdir(parents=True, exist_ok=True)
    for item in ready:
        target = directory / f"output-{workflow}-{order_id}-{item['Id']}.zip"
        size = _call(lambda i=item["Id"], t=target: client.download(order_id, i, t))
        click.echo(f"{target}\t{size}")


@order_group.command("cancel", short_help="Cancel the order.")
@_endpoint_options
@click.argument("order_id")
def cancel_command(service_url: str, token_url: str | None, order_id: str) -> None:
    """Cancel the order (BatchOrder(id)/OData.CSC.Cancel): queued items are dropped, running
    ones stopped."""
    client = _client(service_url, token_url)
    _call(lambda: client.cancel(order_id))
    click.echo(f"order {order_id}: cancel requested", err=True)


# --- helpers ----------------------------------------------------------------------------------


def _client(service_url: str, token_url: str | None) -> Any:
    from hook_processor.order_client import Credentials, HookClient

    token = os.environ.get("HOOK_ACCESS_TOKEN") or None
    if token is not None:
        return HookClient(service_url, token_url, Credentials(token=token))
    if not token_url:
        raise click.UsageError("give --token-url (or HOOK_TOKEN_URL), or HOOK_ACCESS_TOKEN")
    username = os.environ.get("DESP_USERNAME") or click.prompt("Username", err=True)
    password = os.environ.get("DESP_PASSWORD") or click.prompt(
        "Password", hide_input=True, err=True
    )
    return HookClient(service_url, token_url, Credentials(username=username, password=password))


def _call(call: Any) -> Any:
    from hook_processor.order_client import ServiceError, UnreachableError

    try:
        return call()
    except ServiceError as exc:
        raise command_error(str(exc), ExitCode.BAD_OPTIONS) from None
    except UnreachableError as exc:
        raise command_error(str(exc), EXIT_UNREACHABLE) from None
    except UserError as exc:
        raise command_error(str(exc), ExitCode.BAD_OPTIONS) from None


def _load_body(path: Path) -> Mapping[str, Any]:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise click.BadParameter(f"{path}: {exc}", param_hint="--options-file") from None
    if not isinstance(loaded, dict):
        raise click.BadParameter(
            f"{path}: give an order body or a {{name: value}} object", param_hint="--options-file"
        )
    return loaded


def _wait(client: Any, order_id: Any, interval: float) -> list[dict[str, Any]]:
    progress = _Progress(sys.stderr, order_id)
    try:
        items: list[dict[str, Any]] = _call(
            lambda: client.wait(order_id, interval=interval, on_change=progress.update)
        )
    except KeyboardInterrupt:
        progress.close()
        raise command_error(
            f"stopped waiting; order {order_id} goes on (`hook-processor order status "
            f"{order_id}`, or `order cancel {order_id}`)",
            EXIT_INTERRUPTED,
        ) from None
    progress.close()
    return items


def _exit_with(status_or_items: Any) -> None:
    from hook_processor.order_client import outcome

    status = status_or_items if isinstance(status_or_items, str) else outcome(status_or_items)
    sys.exit(_BY_OUTCOME.get(status, 0))


def _item_line(item: Mapping[str, Any]) -> str:
    ref = item.get("InputProductReference")
    where = item.get("DownloadLink") and "DownloadLink" or item.get("ProcessedName") or ""
    message = item.get("StatusMessage") or ""
    parts = [f"  item {item.get('Id')}", f"[{ref}]" if ref else "", str(item.get("Status"))]
    text = " ".join(p for p in parts if p)
    if message:
        text += f": {message}"
    return text + (f" ({where})" if where and item.get("Status") == "completed" else "")


class _Progress:
    """The order's items while waiting: a line rewritten in place on a terminal; otherwise one
    line per item whose status changed (logs and CI keep every step)."""

    def __init__(self, stream: TextIO, order_id: Any) -> None:
        self._stream = stream
        self._order_id = order_id
        self._tty = stream.isatty()
        self._last: dict[Any, Any] = {}
        self._drawn = False

    def update(self, items: Sequence[Mapping[str, Any]]) -> None:
        from hook_processor.order_client import summarize

        if self._tty:
            counts = ", ".join(f"{n} {s}" for s, n in summarize(items).items())
            self._stream.write(f"\rorder {self._order_id}: {counts}\x1b[K")
            self._drawn = True
        else:
            for item in items:
                key = item.get("Id")
                state = (item.get("Status"), item.get("StatusMessage"))
                if self._last.get(key) != state:
                    self._stream.write(f"order {self._order_id}{_item_line(item)}\n")
                    self._last[key] = state
        self._stream.flush()

    def close(self) -> None:
        if self._drawn:
            self._stream.write("\n")
            self._stream.flush()
