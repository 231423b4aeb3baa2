"""The order service: validation, one item per identifier, the priority queue, cancel, recovery.

``submit`` checks a BatchOrder body (400 for its shape, 422 for an unknown workflow or bad
options, nothing stored on error) and stores the order and its items in one transaction. The
queue is the ``items`` table itself: ``concurrency`` worker threads each claim the next
``queued`` item (``Priority`` DESC, then ``Id``: higher first, FIFO within a priority) in a write
transaction, run it with the :class:`~hook_processor.service.executor.Executor`, and record its
result. State lives only in the SQLite file: a restart loses nothing.

What is ours (the live API is silent; hook-contract.md §7):

- An item's ``Status`` follows the runtime's exit code: 0 ``completed``, 6 ``cancelled``, any
  other ``failed``; its ``StatusMessage`` is the result's. While it waits or runs, it carries the
  order messages recorded for those states.
- ``ProcessedName``/``ProcessedSize``: TEMPORARY, the zip's name and size (``DownloadLink`` its
  presigned link); PRIVATE, the output's key prefix and the bytes published, and
  ``OutputLocation`` is ``s3://bucket/prefix``.
- PRIVATE output of an order with several identifiers: each item publishes under
  ``<prefix>/<item Id>`` (the order's ``output_s3_path``/``s3_prefix`` plus the item's Id); with
  one item, under the order's prefix itself.
- The order's ``Status``: ``queued`` while every item is queued; ``in_progress`` while any item
  is queued or running and another has started or ended; once every item has ended, ``failed``
  if any failed, else ``cancelled`` if any was cancelled, else ``completed``. Its
  ``CompletedDate`` is then the last item's. Messages: the recorded ones for queued, in_progress
  and completed; ours for failed (``"N of M items failed: <the first one's message>"``) and
  cancelled.
- Cancel: queued items are cancelled at once; running ones get SIGTERM and are recorded when
  their run ends (exit 6, ``cancelled``). A cancel of a finished order or item is 409.
- Restart: items ``in_progress`` when the server died are queued again (the runtime's
  publication is complete-or-nothing and a rerun of the same item, same ``HOOK_ORDER_ID``, is
  recognised), up to :data:`MAX_ATTEMPTS` runs; then ``failed`` with a message saying why.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hook_processor.errors import ExitCode
from hook_processor.service.executor import Executor, ItemRun
from hook_processor.service.store import Store
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


class OrderService:
    """Orders in, items run by ``concurrency`` workers (see the module doc)."""

    def __init__(
        self,
        store: Store,
        workflows: Sequence[Workflow],
        executor: Executor,
        *,
        concurrency: int = 1,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.store = store
        self.workflows = {w.name: w for w in workflows}
        self.executor = executor
        # In-process runs one item at a time (executor.py says why).
        self.concurrency = min(concurrency, executor.max_concurrency or concurrency)
        self._running: dict[int, threading.Event] = {}  # item Id -> its cancel
        self._work = threading.Event()
        self._stopping = threading.Event()
        self._workers: list[threading.Thread] = []

    # --- orders ---------------------------------------------------------------------------

    def submit(self, body: Mapping[str, Any], *, user: str) -> int:
        """Store a BatchOrder and queue one item per identifier; its Id."""
        name, workflow_name, options, priority, identifiers = _checked_body(body)
        workflow = self.workflows.get(workflow_name)
        if workflow is None:
            known = ", ".join(sorted(self.workflows))
            raise OrderError(
                422,
                [
                    {
                        "loc": ["body", "WorkflowName"],
                        "msg": f"unknown workflow {workflow_name!r}; this server serves: {known}",
                        "type": "value_error",
                    }
                ],
            )
        problems = workflow.validate(options)
        if problems:
            raise OrderError(422, problems)
        secret = workflow.secret_names()
        echoed = [o for o in options if str(o["Name"]).strip().lower() not in secret]
        submitted = now()
        with self.store.write() as db:
            order_id = db.execute(
                "INSERT INTO batch_orders (Name, Priority, WorkflowName, WorkflowId, "
                "WorkflowDisplayName, WorkflowVersion, Status, StatusMessage, SubmissionDate, "
                "KeycloakUUID, options_json, echoed_json, identifiers_json) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    name,
                    priority,
                    workflow.name,
                    workflow.id,
                    workflow.entry.get("DisplayName"),
                    workflow.entry.get("WorkflowVersion"),
                    QUEUED,
                    QUEUED_MESSAGE,
                    submitted,
                    user,
                    json.dumps(options),
                    json.dumps(echoed),
                    json.dumps(identifiers),
                ),
            ).lastrowid
            assert order_id is not None
            db.executemany(
                "INSERT INTO items (BatchOrderId, Position, InputProductReference, Priority, "
                "Status, StatusMessage, SubmissionDate) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (order_id, position, reference, priority, QUEUED, QUEUED_MESSAGE, submitted)
                    for position, reference in enumerate(identifiers or [None])
                ],
            )
        self._work.set()
        return int(order_id)

    def cancel_order(self, order_id: int) -> None:
        """Cancel every unfinished item of the order; 404 unknown, 409 already finished."""
        with self.store.write() as db:
            order = db.execute(
                "SELECT Status FROM batch_orders WHERE Id = ?", (order_id,)
            ).fetchone()
            if order is None:
                raise OrderError(404, f"BatchOrder {order_id} does not exist")
            if order["Status"] in FINISHED:
                raise OrderError(
                    409, f"BatchOrder {order_id} is already {order['Status']}: nothing to cancel"
                )
            items = db.execute(
                "SELECT Id, Status FROM items WHERE BatchOrderId = ? AND Status IN (?, ?)",
                (order_id, QUEUED, IN_PROGRESS),
            ).fetchall()
            for item in items:
                self._cancel_locked(db, int(item["Id"]), item["Status"])
            _refresh_order(db, order_id)

    def cancel_item(self, item_id: int) -> None:
        """Cancel one item (a ProductionOrder); 404 unknown, 409 already finished."""
        with self.store.write() as db:
            item = db.execute(
                "SELECT Status, BatchOrderId FROM items WHERE Id = ?", (item_id,)
            ).fetchone()
            if item is None:
                raise OrderError(404, f"ProductionOrder {item_id} does not exist")
            if item["Status"] in FINISHED:
                raise OrderError(
                    409, f"ProductionOrder {item_id} is already {item['Status']}: nothing to cancel"
                )
            self._cancel_locked(db, item_id, item["Status"])
            _refresh_order(db, int(item["BatchOrderId"]))

    def _cancel_locked(self, db: Any, item_id: int, status: str) -> None:
        if status == QUEUED:
            db.execute(
                "UPDATE items SET Status = ?, StatusMessage = ?, CompletedDate = ? WHERE Id = ?",
                (CANCELLED, "cancelled before it started; nothing was run", now(), item_id),
            )
        elif item_id in self._running:  # its run stops (exit 6) and is recorded as it ends
            self._running[item_id].set()

    def item_log(self, item_id: int) -> Path | None:
        """The item's log file (every attempt); None while it has not run. 404 unknown."""
        row = (
            self.store.connection()
            .execute("SELECT log_path FROM items WHERE Id = ?", (item_id,))
            .fetchone()
        )
        if row is None:
            raise OrderError(404, f"ProductionOrder {item_id} does not exist")
        path = Path(row["log_path"]) if row["log_path"] else None
        return path if path is not None and path.is_file() else None

    # --- the workers ----------------------------------------------------------------------

    def start(self) -> None:
        """Recover what a stopped server left (see the module doc), then start the workers."""
        self._recover()
        self._stopping.clear()
        for number in range(self.concurrency):
            worker = threading.Thread(target=self._work_loop, name=f"hook-item-{number + 1}")
            worker.daemon = True
            worker.start()
            self._workers.append(worker)
        self._work.set()

    def stop(self, *, cancel_running: bool = True, timeout: float = 60.0) -> None:
        """Stop the workers; running items are cancelled (recorded ``cancelled``) or, without
        ``cancel_running``, finish first. Queued items stay queued for the next start."""
        self._stopping.set()
        if cancel_running:
            with self.store.write():  # no claim in between: the claim runs in a write too
                for cancel in self._running.values():
                    cancel.set()
        self._work.set()
        deadline = time.monotonic() + timeout
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        self._workers = [w for w in self._workers if w.is_alive()]

    def wait_idle(self, timeout: float) -> bool:
        """True once no item is queued or running (False after ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        db = self.store.connection()
        while True:
            busy = db.execute(
                "SELECT COUNT(*) FROM items WHERE Status IN (?, ?)", (QUEUED, IN_PROGRESS)
            ).fetchone()[0]
            if not busy and not self._running:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def _recover(self) -> None:
        with self.store.write() as db:
            stale = db.execute(
                "SELECT Id, BatchOrderId, Attempts FROM items WHERE Status = ?", (IN_PROGRESS,)
            ).fetchall()
            for item in stale:
                if int(item["Attempts"]) >= MAX_ATTEMPTS:
                    db.execute(
                        "UPDATE items SET Status = ?, StatusMessage = ?, CompletedDate = ? "
                        "WHERE Id = ?",
                        (
                            FAILED,
                            f"the server stopped while this item ran, {item['Attempts']} times "
                            f"(attempts: {item['Attempts']} of {MAX_ATTEMPTS}); it is not run "
                            "again: see its log, then order it again",
                            now(),
                            item["Id"],
                        ),
                    )
                else:
                    db.execute(
                        "UPDATE items SET Status = ?, StatusMessage = ? WHERE Id = ?",
                        (
                            QUEUED,
                            f"{QUEUED_MESSAGE} (again: the server stopped while it ran)",
                            item["Id"],
                        ),
                    )
            for order_id in {int(i["BatchOrderId"]) for i in stale}:
                _refresh_order(db, order_id)

    def _work_loop(self) -> None:
        while not self._stopping.is_set():
            self._work.clear()
            claimed = self._claim()
            if claimed is None:
                self._work.wait(1.0)
                continue
            item, cancel = claimed
            try:
                result = self.executor.run(item, cancel)
            except BaseException as exc:  # never lose the item: record it failed
                result = {
                    "Status": FAILED,
                    "StatusMessage": f"internal error in hook-processor serve: {exc!r}",
                    "ExitCode": int(ExitCode.INTERNAL_ERROR),
                }
                self._record(item, result)
                raise
            self._record(item, result)

    def _claim(self) -> tuple[ItemRun, threading.Event] | None:
        with self.store.write() as db:
            while True:
                if self._stopping.is_set():
                    return None
                row = db.execute(
                    "SELECT i.Id, i.BatchOrderId, i.InputProductReference, i.Priority, "
                    "i.Attempts, o.Name, o.WorkflowName, o.options_json, "
                    "(SELECT COUNT(*) FROM items n WHERE n.BatchOrderId = o.Id) AS Count "
                    "FROM items i JOIN batch_orders o ON o.Id = i.BatchOrderId "
                    "WHERE i.Status = ? ORDER BY i.Priority DESC, i.Id LIMIT 1",
                    (QUEUED,),
                ).fetchone()
                if row is None:
                    return None
                item_id, order_id = int(row["Id"]), int(row["BatchOrderId"])
                workflow = self.workflows.get(row["WorkflowName"])
                if workflow is None:  # served before a restart, not now
                    db.execute(
                        "UPDATE items SET Status = ?, StatusMessage = ?, CompletedDate = ? "
                        "WHERE Id = ?",
                        (
                            FAILED,
                            f"workflow {row['WorkflowName']!r} is not served any more; serve it "
                            "again and order it again",
                            now(),
                            item_id,
                        ),
                    )
                    _refresh_order(db, order_id)
                    continue
                attempt = int(row["Attempts"]) + 1
                db.execute(
                    "UPDATE items SET Status = ?, StatusMessage = ?, StartedDate = ?, "
                    "Attempts = ?, log_path = ? WHERE Id = ?",
                    (
                        IN_PROGRESS,
                        IN_PROGRESS_MESSAGE,
                        now(),
                        attempt,
                        str(self.executor.log_path(item_id)),
                        item_id,
                    ),
                )
                _refresh_order(db, order_id)
                cancel = threading.Event()
                self._running[item_id] = cancel  # under the write lock: a cancel sees it
                options = item_options(
                    json.loads(row["options_json"]), workflow, item_id, int(row["Count"]) > 1
                )
                return (
                    ItemRun(
                        item_id=item_id,
                        order_id=order_id,
                        order_name=str(row["Name"]),
                        workflow=workflow,
                        options=options,
                        identifier=row["InputProductReference"],
                        priority=int(row["Priority"]),
                        attempt=attempt,
                    ),
                    cancel,
                )

    def _record(self, item: ItemRun, result: Mapping[str, Any]) -> None:
        code = int(result.get("ExitCode", ExitCode.INTERNAL_ERROR))
        status = (
            COMPLETED
            if code == ExitCode.COMPLETED
            else CANCELLED
            if code == ExitCode.CANCELLED
            else FAILED
        )
        name, size, link, location = _output_fields(result) if status == COMPLETED else (None,) * 4
        with self.store.write() as db:
            db.execute(
                "UPDATE items SET Status = ?, StatusMessage = ?, CompletedDate = ?, "
                "ProcessedName = ?, ProcessedSize = ?, DownloadLink = ?, OutputLocation = ?, "
                "ExitCode = ?, result_json = ? WHERE Id = ?",
                (
                    status,
                    str(result.get("StatusMessage") or status),
                    now(),
                    name,
                    size,
                    link,
                    location,
                    code,
                    json.dumps(result, ensure_ascii=False),
                    item.item_id,
                ),
            )
            self._running.pop(item.item_id, None)
            _refresh_order(db, item.order_id)


def _output_fields(result: Mapping[str, Any]) -> tuple[Any, Any, Any, Any]:
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


def _refresh_order(db: Any, order_id: int) -> None:
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


def _checked_body(
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
