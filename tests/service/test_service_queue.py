"""The queue: priorities, cancel, stop, restart after a crash, concurrent submits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from service_support import (
    TEXT,
    MakeService,
    copy_project,
    hello_order,
    items,
    odp_order,
    order,
    wait_for,
)

from hook_processor.s3server import S3Server
from hook_processor.service.orders import MAX_ATTEMPTS, OrderError, OrderService
from hook_processor.service.workflows import load_workflows


def in_process(service: OrderService, order_id: int) -> None:
    """Wait until the order's (first) item runs its process()."""

    def calling() -> bool:
        item = items(service, order_id)[0]
        log = service.item_log(item["Id"]) if item["Status"] == "in_progress" else None
        return log is not None and "process: calling" in log.read_text()

    wait_for(calling)


def test_a_later_higher_priority_order_starts_first(make_service: MakeService) -> None:
    service = make_service(concurrency=1)
    first = service.submit(odp_order(2), user="u")
    wait_for(lambda: items(service, first)[0]["Status"] == "in_progress")
    low = service.submit(odp_order(1, Priority=5), user="u")
    high = service.submit(odp_order(1, Priority=10), user="u")
    same = service.submit(odp_order(1, Priority=10), user="u")  # FIFO within a priority
    assert order(service, high)["Status"] == "queued"
    assert service.wait_idle(90)
    started = {o: items(service, o)[0]["StartedDate"] for o in (first, low, high, same)}
    assert started[first] < started[high] < started[same] < started[low]
    assert all(items(service, o)[0]["Status"] == "completed" for o in started)


def test_cancel_of_a_queued_and_of_a_running_item(make_service: MakeService) -> None:
    service = make_service(concurrency=1)
    running = service.submit(odp_order(30), user="u")
    queued = service.submit(odp_order(1), user="u")
    in_process(service, running)  # into its sleep: past the check and the stage-in

    service.cancel_order(queued)
    (dequeued,) = items(service, queued)
    assert (dequeued["Status"], dequeued["StartedDate"]) == ("cancelled", None)
    assert order(service, queued)["Status"] == "cancelled"
    assert service.item_log(dequeued["Id"]) is None  # it never ran: no log

    began = time.monotonic()
    service.cancel_item(items(service, running)[0]["Id"])
    wait_for(lambda: items(service, running)[0]["Status"] != "in_progress", timeout=15)
    assert time.monotonic() - began < 10
    (stopped,) = items(service, running)
    assert (stopped["Status"], stopped["ExitCode"]) == ("cancelled", 6)
    assert "cancelled by SIGTERM" in stopped["StatusMessage"]
    placed = order(service, running)
    assert placed["Status"] == "cancelled" and placed["CompletedDate"]

    for call, target in ((service.cancel_order, running), (service.cancel_item, dequeued["Id"])):
        with pytest.raises(OrderError) as caught:
            call(target)
        assert caught.value.status == 409 and "already cancelled" in str(caught.value.detail)
    for call in (service.cancel_order, service.cancel_item, service.item_log):
        with pytest.raises(OrderError) as caught:
            call(9999)
        assert caught.value.status == 404


def test_stop_cancels_running_items_and_records_them(make_service: MakeService) -> None:
    service = make_service(concurrency=1)
    running = service.submit(odp_order(30), user="u")
    queued = service.submit(odp_order(1), user="u")
    in_process(service, running)
    began = time.monotonic()
    service.stop(cancel_running=True)
    assert time.monotonic() - began < 10
    assert (items(service, running)[0]["Status"], items(service, running)[0]["ExitCode"]) == (
        "cancelled",
        6,
    )
    assert items(service, queued)[0]["Status"] == "queued"  # runs after the next start


SLOW_PROCESSOR = """
from pathlib import Path
import time

MARK = Path({mark!r})


def process(input_dir: Path, output_dir: Path) -> None:
    first = not MARK.exists()
    MARK.write_text("started")
    if first:
        time.sleep(60)  # the server is killed meanwhile
    for source in input_dir.rglob("*"):
        if source.is_file():
            (output_dir / source.name).write_text(source.read_text().upper())
"""

CHILD = """
import sys, time
from pathlib import Path
from hook_processor.s3server import S3Server
from hook_processor.service.executor import Executor
from hook_processor.service.orders import OrderService
from hook_processor.service.store import Store
from hook_processor.service.workflows import load_workflows

data, project, endpoint, access, secret = sys.argv[1:]
workflows = load_workflows([Path(project)], [])
s3 = S3Server(endpoint, access, secret)
service = OrderService(Store(Path(data) / "hook.sqlite3"), workflows,
                       Executor(mode="inprocess", s3=s3, data_dir=Path(data)))
service.start()
time.sleep(120)
"""


def test_after_a_crash_queued_items_run_and_the_running_one_is_rerun(
    make_service: MakeService, hello_input: str, s3_server: S3Server, tmp_path: Path
) -> None:
    mark = tmp_path / "started.txt"
    project = copy_project(tmp_path, "slow_hello", SLOW_PROCESSOR.format(mark=str(mark)))
    workflows = load_workflows([project], [])
    data = tmp_path / "data"
    before = make_service(data_dir=data, start=False, workflows=workflows)
    body = hello_order(hello_input, WorkflowName="slow_hello")
    crashed = before.submit(body, user="u")
    waiting = before.submit(
        hello_order(hello_input, storage="TEMPORARY", WorkflowName="slow_hello"), user="u"
    )

    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHILD,
            str(data),
            str(project),
            s3_server.endpoint_url,
            s3_server.access_key,
            s3_server.secret_key,
        ],
        start_new_session=True,
    )
    try:
        wait_for(mark.exists, timeout=60)
        assert items(before, crashed)[0]["Status"] == "in_progress"
    finally:
        os.killpg(child.pid, signal.SIGKILL)  # the server dies: no cleanup of any kind
        child.wait()
    assert [i["Status"] for i in items(before)] == ["in_progress", "queued"]

    after = make_service(data_dir=data, workflows=workflows)
    assert after.wait_idle(60)
    (rerun,) = items(after, crashed)
    assert (rerun["Status"], rerun["Attempts"]) == ("completed", 2), rerun["StatusMessage"]
    body_out = s3_server.client().get_object(Bucket=hello_input, Key="output/example.data")
    assert body_out["Body"].read() == TEXT.upper()
    log = (after.item_log(rerun["Id"]) or Path()).read_text()
    assert "attempt 1" in log and "attempt 2" in log
    (later,) = items(after, waiting)
    assert (later["Status"], later["Attempts"]) == ("completed", 1)


def test_an_item_that_died_with_the_server_three_times_is_failed(
    make_service: MakeService, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    before = make_service(data_dir=data, start=False)
    order_id = before.submit(odp_order(1), user="u")
    with before.store.write() as db:  # what three crashed servers leave behind
        db.execute(
            "UPDATE items SET Status = 'in_progress', Attempts = ? WHERE BatchOrderId = ?",
            (MAX_ATTEMPTS, order_id),
        )
    after = make_service(data_dir=data)
    assert after.wait_idle(10)
    (item,) = items(after, order_id)
    assert item["Status"] == "failed" and item["Attempts"] == MAX_ATTEMPTS
    assert "the server stopped while this item ran, 3 times" in item["StatusMessage"]
    placed = order(after, order_id)
    assert placed["Status"] == "failed" and "1 of 1 items failed" in placed["StatusMessage"]


def test_two_threads_posting_200_orders_at_once_lose_none(make_service: MakeService) -> None:
    service = make_service(start=False)
    ids: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def post(thread: int) -> None:
        barrier.wait()
        for n in range(100):
            try:
                ids.append(service.submit(odp_order(1, Name=f"t{thread}-{n}"), user="u"))
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

    threads = [threading.Thread(target=post, args=(t,)) for t in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(set(ids)) == 200
    db = service.store.connection()
    names = {r[0] for r in db.execute("SELECT Name FROM batch_orders")}
    assert names == {f"t{t}-{n}" for t in range(2) for n in range(100)}
    assert db.execute("SELECT COUNT(*) FROM items WHERE Status = 'queued'").fetchone()[0] == 200
    assert json.loads(db.execute("SELECT echoed_json FROM batch_orders").fetchone()[0])


def test_a_rerun_of_a_published_item_is_recognised_not_published_twice(
    make_service: MakeService, hello_input: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    first = make_service(data_dir=data)
    order_id = first.submit(hello_order(hello_input), user="u")
    assert first.wait_idle(60)
    first.stop()
    with first.store.write() as db:  # the server died after the publication, before recording it
        db.execute("UPDATE items SET Status = 'in_progress' WHERE BatchOrderId = ?", (order_id,))
    again = make_service(data_dir=data)
    assert again.wait_idle(60)
    (item,) = items(again, order_id)
    assert (item["Status"], item["Attempts"]) == ("completed", 2)
    assert "already published by an earlier run of this order" in item["StatusMessage"]
    assert item["OutputLocation"] == f"s3://{hello_input}/output"


QUICK_SLOW = """
import time
from pathlib import Path


def process(input_dir: Path, output_dir: Path) -> None:
    time.sleep(2)
    (output_dir / "done.txt").write_text("done")
"""


def test_an_inprocess_item_cancelled_during_process_ends_cancelled_when_it_returns(
    make_service: MakeService, hello_input: str, tmp_path: Path
) -> None:
    workflows = load_workflows([copy_project(tmp_path, "pause", QUICK_SLOW)], [])
    service = make_service(mode="inprocess", concurrency=3, workflows=workflows)
    assert service.concurrency == 1  # in-process: one item at a time
    order_id = service.submit(hello_order(hello_input, WorkflowName="pause"), user="u")
    log = tmp_path / "data" / "items"
    wait_for(lambda: "process: calling" in "".join(p.read_text() for p in log.rglob("log.txt")))
    service.cancel_order(order_id)
    assert service.wait_idle(20)
    (item,) = items(service, order_id)
    assert (item["Status"], item["ExitCode"]) == ("cancelled", 6)
    assert "nothing was published" in item["StatusMessage"]


def test_an_executor_bug_fails_the_item_and_the_worker_goes_on(
    make_service: MakeService, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = make_service(start=False)
    broken = service.submit(odp_order(1, Priority=90), user="u")
    fine = service.submit(odp_order(1), user="u")
    real_run = service.executor.run
    calls: list[int] = []

    def run_once_broken(item, cancel):  # type: ignore[no-untyped-def]
        calls.append(item.item_id)
        if len(calls) == 1:
            raise RuntimeError("injected bug")
        return real_run(item, cancel)

    monkeypatch.setattr(service.executor, "run", run_once_broken)
    service.start()
    assert service.wait_idle(60)
    (failed,) = items(service, broken)
    assert failed["Status"] == "failed" and "injected bug" in failed["StatusMessage"]
    assert items(service, fine)[0]["Status"] == "completed"
