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
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hook_processor.errors import ExitCode
from hook_processor.service._order_rules import (
    CANCELLED,
    COMPLETED,
    DEFAULT_PRIORITY,
    FAILED,
    FINISHED,
    IN_PROGRESS,
    IN_PROGRESS_MESSAGE,
    MAX_ATTEMPTS,
    QUEUED,
    QUEUED_MESSAGE,
    OrderError,
    checked_body,
    item_options,
    now,
    output_fields,
    refresh_order,
)
from hook_processor.service.executor import Executor, ItemRun, NotRun
from hook_processor.service.store import Store
from hook_processor.service.workflows import Workflow

_log = logging.getLogger("hook_processor.service")

__all__ = ["DEFAULT_PRIORITY", "MAX_ATTEMPTS", "OrderError", "OrderService", "now"]


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
        self._cancelled_by_user: set[int] = set()  # running items a cancel request stops
        self._stop_reason: str | None = None  # why stop() cancels the running items
        self._work = threading.Event()
        self._stopping = threading.Event()
        self._workers: list[threading.Thread] = []

    # --- orders ---------------------------------------------------------------------------

    def submit(self, body: Mapping[str, Any], *, user: str) -> int:
        """Store a BatchOrder and queue one item per identifier; its Id."""
        name, workflow_name, options, priority, identifiers = checked_body(body)
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
            refresh_order(db, order_id)

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
            refresh_order(db, int(item["BatchOrderId"]))

    def _cancel_locked(self, db: Any, item_id: int, status: str) -> None:
        if status == QUEUED:
            db.execute(
                "UPDATE items SET Status = ?, StatusMessage = ?, CompletedDate = ? WHERE Id = ?",
                (CANCELLED, "cancelled before it started; nothing was run", now(), item_id),
            )
        elif item_id in self._running:  # its run stops (exit 6) and is recorded as it ends
            self._cancelled_by_user.add(item_id)
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

    def stop(
        self, *, cancel_running: bool = True, timeout: float = 60.0, reason: str | None = None
    ) -> None:
        """Stop the workers; running items are cancelled (recorded ``cancelled``) or, without
        ``cancel_running``, finish first. Queued items stay queued for the next start.

        ``reason`` (ours), e.g. ``"hook-processor serve was stopped (SIGINT)"``: the message of
        each item this stop cancels is ``"cancelled: <reason> while the item ran; ..."``, its
        run's own message after it (the run only sees a SIGTERM, which is not what happened)."""
        self._stop_reason = reason
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
                refresh_order(db, order_id)

    def _work_loop(self) -> None:
        while not self._stopping.is_set():
            self._work.clear()
            if not self.executor.available():  # e.g. no Dask scheduler: queued items wait
                self._stopping.wait(1.0)
                continue
            try:
                claimed = self._claim()
            except Exception:  # e.g. the disk is full: keep the worker, try again
                _log.exception("could not claim the next item")
                self._stopping.wait(1.0)
                continue
            if claimed is None:
                self._work.wait(1.0)
                continue
            item, cancel = claimed
            try:
                result = self.executor.run(item, cancel)
            except NotRun as why:  # nothing ran: back in the queue
                self._requeue(item, str(why))
                self._stopping.wait(1.0)
                continue
            except Exception as exc:  # a bug of ours (run() reports failed runs): record it
                _log.exception("item %s: the executor failed", item.item_id)
                result = {
                    "Status": FAILED,
                    "StatusMessage": f"internal error in hook-processor serve: {exc!r}",
                    "ExitCode": int(ExitCode.INTERNAL_ERROR),
                }
            try:
                self._record(item, result)
            except Exception:  # left in_progress: the next start re-runs it
                _log.exception("item %s: could not record its result", item.item_id)
                self._running.pop(item.item_id, None)

    def _requeue(self, item: ItemRun, why: str) -> None:
        with self.store.write() as db:
            db.execute(
                "UPDATE items SET Status = ?, StatusMessage = ?, StartedDate = NULL, "
                "Attempts = MAX(Attempts - 1, 0) WHERE Id = ? AND Status = ?",
                (QUEUED, f"{QUEUED_MESSAGE} (again: {why})", item.item_id, IN_PROGRESS),
            )
            self._running.pop(item.item_id, None)
            if item.item_id in self._cancelled_by_user:  # cancelled meanwhile: it never ran
                self._cancelled_by_user.discard(item.item_id)
                self._cancel_locked(db, item.item_id, QUEUED)
            refresh_order(db, item.order_id)

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
                    refresh_order(db, order_id)
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
                refresh_order(db, order_id)
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
        name, size, link, location = output_fields(result) if status == COMPLETED else (None,) * 4
        message = str(result.get("StatusMessage") or status)
        by_user = item.item_id in self._cancelled_by_user
        self._cancelled_by_user.discard(item.item_id)
        if status == CANCELLED and self._stop_reason and not by_user:
            message = (
                f"cancelled: {self._stop_reason} while the item ran; it is not run again "
                f"(order it again to run it). Its run: {message}"
            )
        with self.store.write() as db:
            db.execute(
                "UPDATE items SET Status = ?, StatusMessage = ?, CompletedDate = ?, "
                "ProcessedName = ?, ProcessedSize = ?, DownloadLink = ?, OutputLocation = ?, "
                "ExitCode = ?, result_json = ? WHERE Id = ?",
                (
                    status,
                    message,
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
            refresh_order(db, item.order_id)
