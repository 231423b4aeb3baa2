"""The order rules of :mod:`hook_processor.service.orders`: a BatchOrder body's shape, the
statuses and their messages, an order's status from its items, an item's output fields and its
options (the per-item PRIVATE prefix). The module doc of ``orders`` states them; all ours where
the live API is silent."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from hook_processor.service.workflows import Workflow

QUEUED, IN_PROGRESS, COMPLETED, FAILED, CANCELLED = (
    "queued",
    "in_progress",
    "completed",
    "failed",
    "cancelled",
)
FINISHED = frozenset({COMPLETED, FAILED, CANCELLED})
QUEUED_MESSAGE = "request is queued for processing"
IN_PROGRESS_MESSAGE = "request is under processing"
COMPLETED_MESSAGE = "requested output product is available"
MAX_ATTEMPTS = 3
DEFAULT_PRIORITY = 50


class OrderError(Exception):
    """A refused request: the app answers ``{"detail": detail}`` with ``status``."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(detail if isinstance(detail, str) else json.dumps(detail))
        self.status = status
        self.detail = detail


def now() -> str:
    """ISO 8601 UTC with milliseconds and Z, as the live API writes dates."""
    ts = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


def output_fields(result: Mapping[str, Any]) -> tuple[Any, Any, Any, Any]:
    """(ProcessedName, ProcessedSize, DownloadLink, OutputLocation) of a completed result."""
    products = result.get("Products") or []
    if result.get("OutputStorage") == "TEMPORARY":
        product = products[0] if products else {}
        return (
            result.get("ProcessedName", product.get("Name")),
            result.get("ProcessedSize", product.get("Size")),
            result.get("DownloadLink", product.get("DownloadLink")),
            None,
        )
    manifest = str(result.get("Manifest") or "")
    location = manifest.rsplit("/", 1)[0] if "/" in manifest.removeprefix("s3://") else None
    prefix = location.removeprefix("s3://").partition("/")[2] if location else None
    size = (result.get("Output") or {}).get("Bytes")
    return prefix, size, None, location


def item_options(
    options: list[dict[str, Any]], workflow: Workflow, item_id: int, several: bool
) -> list[dict[str, Any]]:
    """The options one item runs with: with several items and PRIVATE output, the prefix is
    ``<prefix>/<item Id>`` (ours; see the module doc)."""
    from hook_processor.options import StandardOptions, option_aliases

    def canonical(name: str) -> str:
        for field in ("output_storage", "output_s3_path", "s3_prefix"):
            if name.strip().lower() in (a.lower() for a in option_aliases(StandardOptions, field)):
                return field
        return name.strip().lower()

    values = {canonical(str(o["Name"])): o.get("Value") for o in options}
    storage = values.get("output_storage") or workflow.defaults.get("output_storage") or "PRIVATE"
    if not several or str(storage).strip().upper() != "PRIVATE":
        return options
    out = [dict(o) for o in options]
    for field in ("output_s3_path", "s3_prefix"):
        for option in out:
            if canonical(str(option["Name"])) == field and isinstance(option.get("Value"), str):
                option["Value"] = f"{option['Value'].rstrip('/')}/{item_id}"
                return out
    return [*out, {"Name": "s3_prefix", "Value": str(item_id)}]


def refresh_order(db: Any, order_id: int) -> None:
    """The order's Status, StatusMessage and CompletedDate from its items (the module's rule)."""
    items = db.execute(
        "SELECT Status, StatusMessage, CompletedDate FROM items WHERE BatchOrderId = ? "
        "ORDER BY Position",
        (order_id,),
    ).fetchall()
    statuses = [i["Status"] for i in items]
    completed_date = None
    if all(s == QUEUED for s in statuses):
        status, message = QUEUED, QUEUED_MESSAGE
    elif not all(s in FINISHED for s in statuses):
        status, message = IN_PROGRESS, IN_PROGRESS_MESSAGE
    else:
        completed_date = max(i["CompletedDate"] or "" for i in items) or now()
        failed = [i for i in items if i["Status"] == FAILED]
        cancelled = statuses.count(CANCELLED)
        if failed:
            status = FAILED
            message = f"{len(failed)} of {len(items)} items failed: {failed[0]['StatusMessage']}"
        elif cancelled:
            status = CANCELLED
            message = f"cancelled: {cancelled} of {len(items)} items cancelled"
        else:
            status, message = COMPLETED, COMPLETED_MESSAGE
    db.execute(
        "UPDATE batch_orders SET Status = ?, StatusMessage = ?, CompletedDate = ? WHERE Id = ?",
        (status, message, completed_date, order_id),
    )


def checked_body(
    body: Any,
) -> tuple[str, str, list[dict[str, Any]], int, list[str]]:
    """(Name, WorkflowName, WorkflowOptions, Priority, IdentifierList) of a BatchOrder body, or
    OrderError(400) naming every problem and its fix."""
    if not isinstance(body, Mapping):
        raise OrderError(
            400,
            "the body must be a JSON object: a BatchOrder with Name, WorkflowName and optionally "
            "WorkflowOptions, IdentifierList, Priority",
        )
    problems: list[str] = []
    name, workflow_name = body.get("Name"), body.get("WorkflowName")
    for field, value in (("Name", name), ("WorkflowName", workflow_name)):
        if not isinstance(value, str) or not value.strip():
            problems.append(f"{field}: required, a non-empty string")
    options = body.get("WorkflowOptions")
    if options is None:
        options = []
    elif not isinstance(options, list) or not all(
        isinstance(o, Mapping)
        and isinstance(o.get("Name"), str)
        and o["Name"].strip()
        and set(o) <= {"Name", "Value"}
        for o in options
    ):
        problems.append(
            'WorkflowOptions: must be a list of {"Name": <string>, "Value": <value>} objects'
        )
        options = []
    priority = body.get("Priority")
    if priority is None:
        priority = DEFAULT_PRIORITY
    elif isinstance(priority, bool) or not isinstance(priority, int) or not 1 <= priority <= 100:
        problems.append("Priority: must be an integer from 1 to 100 (default 50; higher first)")
        priority = DEFAULT_PRIORITY
    identifiers = body.get("IdentifierList")
    if identifiers is None:
        identifiers = []
    elif not isinstance(identifiers, list) or not all(isinstance(i, str) for i in identifiers):
        problems.append('IdentifierList: must be a list of strings, e.g. ["Custom Hook"]')
        identifiers = []
    if problems:
        raise OrderError(400, "; ".join(problems))
    assert isinstance(name, str) and isinstance(workflow_name, str)
    return name, workflow_name, [dict(o) for o in options], priority, list(identifiers)
