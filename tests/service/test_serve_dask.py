"""``hook-processor serve --executor dask`` against a real scheduler and two real workers on
127.0.0.1 (``dask_cluster``), serve started as a user starts it (``serve_process``)."""

from __future__ import annotations

import contextlib
import http.server
import json
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
from click.testing import CliRunner
from dask_cluster import DaskCluster, dask_cluster, free_port
from serve_process import HELLO_WORLD, Served, child_env, hook_processor_command

from hook_processor.cli import main
from hook_processor.service._dask_task import _child_environment, _unsealed, new_key, seal

KEY = new_key()
ENV = {"HOOK_DASK_KEY": KEY}
IN_SECRET = "in-secret-4e1f-never-in-a-graph"
ITEMS = 20
BUCKET = "dask-out"

PROCESSOR = """\
import time
from pathlib import Path


def process(input_dir: Path, output_dir: Path) -> None:
    time.sleep(SLEEP)
    for path in input_dir.rglob("*"):
        if path.is_file():
            (output_dir / path.name).write_text(path.read_text().upper())
"""


def project(tmp_path: Path, sleep: float) -> Path:
    """hello_world, its process() taking ``sleep`` seconds (the order's items are tiny)."""
    folder = tmp_path / "slow_hello"
    shutil.copytree(HELLO_WORLD, folder, ignore=shutil.ignore_patterns("__pycache__", "tests"))
    (folder / "dedl_hello_world" / "processor.py").write_text(
        PROCESSOR.replace("SLEEP", repr(sleep))
    )
    return folder


@contextlib.contextmanager
def dask_serve(tmp_path: Path, cluster: DaskCluster, folder: Path) -> Iterator[Served]:
    served = Served(
        [str(folder), "--executor", "dask", "--dask-scheduler", cluster.address],
        tmp_path / f"serve-{time.time_ns()}",
        env=ENV,
    )
    try:
        yield served
    finally:
        if served.proc.poll() is None:
            served.kill()


def order(served: Served, count: int, name: str, priority: int = 50) -> dict[str, Any]:
    s3 = served.s3_client()
    with contextlib.suppress(Exception):
        s3.create_bucket(Bucket="dask-in")
    s3.put_object(Bucket="dask-in", Key="input/example.data", Body=b"hello dask\n")
    return {
        "Name": name,
        "WorkflowName": "dedl_hello_world",
        "Priority": priority,
        "IdentifierList": [f"product-{n:03d}" for n in range(count)],
        "WorkflowOptions": [
            {"Name": "source_s3_path", "Value": "s3://dask-in/input/"},
            {"Name": "source_s3_endpoint_url", "Value": served.s3_endpoint},
            {"Name": "source_s3_access_key", "Value": served.info["s3_access_key"]},
            {"Name": "source_s3_secret_key", "Value": IN_SECRET},
            {"Name": "output_storage", "Value": "PRIVATE"},
            {"Name": "output_s3_path", "Value": f"s3://{BUCKET}/{name}"},
            {"Name": "output_s3_endpoint_url", "Value": served.s3_endpoint},
            {"Name": "output_s3_access_key", "Value": served.info["s3_access_key"]},
            {"Name": "output_s3_secret_key", "Value": served.info["s3_secret_key"]},
        ],
    }


def item_log(served: Served, item_id: int) -> str:
    return (served.data_dir / "items" / str(item_id) / "log.txt").read_text()


def workers_of(served: Served, item_id: int) -> list[str]:
    return re.findall(
        r"started(?: again)?.*? on Dask worker (tcp://\S+)", item_log(served, item_id)
    )


def manifests(served: Served, name: str) -> list[str]:
    s3 = served.s3_client()
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"{name}/")
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    return sorted(k for k in keys if k.endswith("_manifest.json"))


def scheduler_tasks(cluster: DaskCluster, client: Any = None) -> list[tuple[str, bytes, Any]]:
    """Every task the scheduler holds: its key and its run spec, pickled as it travels."""

    def dump(dask_scheduler: Any) -> list[tuple[str, bytes, Any]]:  # nested: by value
        from distributed.protocol.pickle import dumps

        return [(str(k), dumps(ts.run_spec), ts.priority) for k, ts in dask_scheduler.tasks.items()]

    if client is not None:
        tasks: list[tuple[str, bytes, Any]] = client.run_on_scheduler(dump)
        return tasks
    with contextlib.closing(cluster.client()) as own:
        return scheduler_tasks(cluster, own)


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[DaskCluster]:
    """A cluster of this test alone (it kills part of it)."""
    with dask_cluster(tmp_path / "cluster", child_env(ENV)) as running:
        yield running


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    with dask_cluster(tmp_path_factory.mktemp("dask"), child_env(ENV)) as running:
        yield running


def test_an_order_of_20_runs_on_both_workers_with_one_output_set_each_and_no_secret_in_the_graph(
    tmp_path: Path, cluster: DaskCluster
) -> None:
    with dask_serve(tmp_path, cluster, project(tmp_path, 0.0)) as served:
        secrets = [IN_SECRET, served.info["s3_secret_key"], KEY]
        order_id = served.submit(order(served, ITEMS, "twenty", priority=73))
        seen: list[tuple[str, bytes, Any]] = []
        deadline = time.monotonic() + 120
        with contextlib.closing(cluster.client()) as client:
            while not all(i["Status"] == "completed" for i in served.products(order_id)):
                assert time.monotonic() < deadline, served.products(order_id)
                statuses = {i["Status"] for i in served.products(order_id)}
                assert not statuses & {"failed", "cancelled"}
                seen.extend(scheduler_tasks(cluster, client))
                time.sleep(0.2)
        items = served.products(order_id)
        assert len(items) == ITEMS
        ran_on = {w for i in items for w in workers_of(served, int(i["Id"]))}
        assert len(ran_on) == 2, ran_on  # both workers ran items
        assert len(manifests(served, "twenty")) == ITEMS
        for item in items:
            manifest = json.loads(
                served.s3_client()
                .get_object(Bucket=BUCKET, Key=f"twenty/{item['Id']}/_manifest.json")["Body"]
                .read()
            )
            # example.data and its STAC catalog (catalog.json, one item per product)
            assert sorted(f["key"].split("/", 2)[-1] for f in manifest["files"]) == [
                "_stac/example.data.json",
                "catalog.json",
                "example.data",
            ]
            body = served.s3_client().get_object(
                Bucket=BUCKET, Key=f"twenty/{item['Id']}/example.data"
            )
            assert body["Body"].read() == b"HELLO DASK\n"
            # the result and the run's own log came back into the service's store
            assert item["ProcessedName"] == f"twenty/{item['Id']}"
            assert item["ProcessedSize"] == sum(f["size"] for f in manifest["files"])
            assert f"publish: output to s3://{BUCKET}/twenty/{item['Id']}" in item_log(
                served, int(item["Id"])
            )
        keys = {k for k, _, _ in seen}
        assert any(k.startswith("hook-item-") for k in keys), keys  # the graph was looked at
        # the order's Priority is the task's (the scheduler keeps it negated: lower runs first)
        assert {p[0] for k, _, p in seen if k.startswith("hook-item-")} == {-73}
        with contextlib.closing(cluster.client()) as client:
            scheduler_log = json.dumps(client.get_scheduler_logs(), default=str)
        for secret in secrets:
            assert not any(secret in k for k in keys)
            assert not any(secret.encode() in spec for _, spec, _ in seen)
            assert secret not in scheduler_log
            assert secret not in cluster.logs()
            assert secret not in served.stderr()


def test_a_worker_killed_mid_order_gives_20_completed_items_and_20_manifests(
    tmp_path: Path, own_cluster: DaskCluster
) -> None:
    cluster = own_cluster
    with dask_serve(tmp_path, cluster, project(tmp_path, 0.3)) as served:
        order_id = served.submit(order(served, ITEMS, "killed"))
        deadline = time.monotonic() + 60
        while sum(i["Status"] == "completed" for i in served.products(order_id)) < 4:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        victim = cluster.workers[0]
        time.sleep(0.5)  # mid-item: each item's run takes seconds here (startup, S3)
        cluster.kill(victim)
        items = served.wait_for(order_id, {"completed", "failed", "cancelled"}, timeout=150)
        assert [i["Status"] for i in items] == ["completed"] * ITEMS, items
        assert len(manifests(served, "killed")) == ITEMS
        reran = [i for i in items if len(workers_of(served, int(i["Id"]))) > 1]
        assert reran, "no item was running on the killed worker"
        for item in reran:
            assert "again (Dask re-ran it" in item_log(served, int(item["Id"]))
        # none twice: every object under the order's prefix is in its item's manifest
        s3 = served.s3_client()
        listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="killed/")["Contents"]
        names = sorted(o["Key"] for o in listed)
        expected = sorted(
            f"killed/{i['Id']}/{n}"
            for i in items
            for n in ("_manifest.json", "_stac/example.data.json", "catalog.json", "example.data")
        )
        assert names == expected


def test_cancel_of_the_order_stops_the_running_children_and_the_remaining_futures(
    tmp_path: Path, cluster: DaskCluster
) -> None:
    with dask_serve(tmp_path, cluster, project(tmp_path, 30.0)) as served:
        order_id = served.submit(order(served, 6, "cancelled"))
        deadline = time.monotonic() + 60
        while (
            sum(
                "started on Dask worker" in _log_or_empty(served, int(i["Id"]))
                for i in served.products(order_id)
            )
            < 2
        ):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        answer = requests.post(
            f"{served.root}BatchOrder({order_id})/OData.CSC.Cancel",
            headers=served.headers(),
            timeout=30,
        )
        assert answer.status_code in (200, 204), answer.text
        started = time.monotonic()
        items = served.wait_for(order_id, {"cancelled"}, timeout=40)
        assert time.monotonic() - started < 25  # not the 30 s the processor sleeps
        running = [
            i for i in items if "started on Dask worker" in _log_or_empty(served, int(i["Id"]))
        ]
        assert len(running) == 2
        for item in running:
            assert "exit 6" in item_log(served, int(item["Id"]))
        deadline = time.monotonic() + 20
        while [k for k, _, _ in scheduler_tasks(cluster) if k.startswith("hook-item-")]:
            assert time.monotonic() < deadline, scheduler_tasks(cluster)
            time.sleep(0.2)
        assert manifests(served, "cancelled") == []


def test_a_killed_serve_leaves_no_child_running_on_the_workers(
    tmp_path: Path, cluster: DaskCluster
) -> None:
    # Its items are re-run at its next start (same HOOK_ORDER_ID): an orphan still publishing
    # beside the rerun would be two runs at one prefix.
    workers = [psutil.Process(w.pid) for w in cluster.workers]
    with dask_serve(tmp_path, cluster, project(tmp_path, 30.0)) as served:
        served.submit(order(served, 3, "orphans"))
        deadline = time.monotonic() + 60
        while len(children := [c for w in workers for c in w.children(True)]) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        served.kill()  # SIGKILL: nothing of serve runs any more
    gone, alive = psutil.wait_procs(children, timeout=20)
    assert not alive, alive


def _log_or_empty(served: Served, item_id: int) -> str:
    try:
        return item_log(served, item_id)
    except OSError:
        return ""


def test_a_scheduler_that_goes_away_fails_the_running_items_and_leaves_queued_ones_queued(
    tmp_path: Path, own_cluster: DaskCluster
) -> None:
    cluster = own_cluster
    with dask_serve(tmp_path, cluster, project(tmp_path, 30.0)) as served:
        order_id = served.submit(order(served, 5, "lost"))
        deadline = time.monotonic() + 60
        while (
            sum(
                "started on Dask worker" in _log_or_empty(served, int(i["Id"]))
                for i in served.products(order_id)
            )
            < 2
        ):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert cluster.scheduler is not None
        workers = [psutil.Process(w.pid) for w in cluster.workers]
        deadline = time.monotonic() + 30
        while len(children := [c for w in workers for c in w.children(True)]) < 2:
            assert time.monotonic() < deadline  # the items' hook-processor exec, one per worker
            time.sleep(0.1)
        cluster.kill(cluster.scheduler)
        deadline = time.monotonic() + 30
        while sum(i["Status"] == "failed" for i in served.products(order_id)) < 2:
            assert time.monotonic() < deadline, served.products(order_id)
            time.sleep(0.2)
        time.sleep(3)  # nothing else is claimed while no scheduler answers
        items = served.products(order_id)
        statuses = sorted(i["Status"] for i in items)
        assert statuses == ["failed", "failed", "queued", "queued", "queued"], items
        for item in items:
            if item["Status"] == "failed":
                assert (
                    f"the Dask scheduler at --dask-scheduler {cluster.address} went away"
                    in (item["StatusMessage"])
                )
        assert manifests(served, "lost") == []
        # the workers stopped the children: nobody would record what they did
        gone, alive = psutil.wait_procs(children, timeout=30)
        assert not alive, alive
        # a scheduler (and workers: theirs stopped with it) back at the address: serve connects
        # again by itself and the queue goes on
        cluster.start_scheduler()
        cluster.start_worker()
        deadline = time.monotonic() + 90
        while (
            sum(
                "started on Dask worker" in _log_or_empty(served, int(i["Id"]))
                for i in served.products(order_id)
            )
            < 3
        ):
            assert time.monotonic() < deadline, served.products(order_id)
            time.sleep(0.2)
        assert "connected again; queued items run" in served.stderr()


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--executor", "dask"], ENV, "needs one of --dask-scheduler"),
        (["--dask-scheduler", "tcp://127.0.0.1:1"], ENV, "--dask-scheduler goes with --executor"),
        (["--dask-gateway", "http://127.0.0.1:1"], ENV, "--dask-gateway goes with --executor"),
        (["--executor", "dask", "--dask-scheduler", "tcp://127.0.0.1:1"], {}, "HOOK_DASK_KEY"),
        (
            ["--executor", "dask", "--dask-scheduler", "tcp://h:1", "--dask-gateway", "http://h"],
            ENV,
            "needs one of --dask-scheduler",
        ),
        (
            ["--executor", "dask", "--dask-scheduler", "tcp://127.0.0.1:1", "--mode", "inprocess"],
            ENV,
            "--mode is the local executor's",
        ),
        (["--executor", "dask", "--dask-scheduler", "127.0.0.1:1"], ENV, "tcp://HOST:PORT"),
        (
            ["--executor", "dask", "--dask-scheduler", "tcp://127.0.0.1:1"],
            {"HOOK_DASK_KEY": "not-a-key"},
            "HOOK_DASK_KEY is not a Fernet key",
        ),
    ],
)
def test_serve_dask_usage_errors_exit_2_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], env: dict, message: str
) -> None:
    monkeypatch.delenv("HOOK_DASK_KEY", raising=False)
    result = CliRunner().invoke(
        main, ["serve", str(HELLO_WORLD), "--data-dir", str(tmp_path / "d"), *args], env=env
    )
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "not-a-key" not in result.output
    assert not (tmp_path / "d").exists()  # nothing was started


@pytest.mark.parametrize("module", ["distributed", "dask_gateway"])
def test_serve_dask_without_the_dask_extra_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # as if it were not installed
    where = ["--dask-gateway", "http://127.0.0.1:1"] if module == "dask_gateway" else []
    result = CliRunner().invoke(
        main,
        [
            "serve",
            str(HELLO_WORLD),
            "--executor",
            "dask",
            *(where or ["--dask-scheduler", "tcp://127.0.0.1:1"]),
        ],
        env=ENV,
    )
    assert result.exit_code == 2, result.output
    assert f"needs the Python module {module}" in result.stderr
    assert "pip install 'hook-processor[dask]'" in result.stderr


def test_serve_dask_refuses_an_unreachable_scheduler_or_gateway_in_one_line(
    tmp_path: Path,
) -> None:
    def serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*hook_processor_command(), "serve", str(HELLO_WORLD), "--port", "0", *args],
            capture_output=True,
            text=True,
            env=child_env(env),
            cwd=tmp_path,
            timeout=60,
        )

    address = f"tcp://127.0.0.1:{free_port()}"
    cases = [
        (
            ["--executor", "dask", "--dask-scheduler", address],
            ENV,
            f"--dask-scheduler {address}: cannot connect to the Dask cluster there",
        ),
        (
            ["--executor", "dask", "--dask-gateway", f"http://127.0.0.1:{free_port()}"],
            ENV,
            "cannot connect to the Dask cluster there",
        ),
    ]
    for args, env, message in cases:
        done = serve(*args, env=env)
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr
        assert KEY not in done.stderr
        assert "Unclosed" not in done.stderr


class _Refusing(http.server.BaseHTTPRequestHandler):
    """A gateway that refuses everyone: it keeps the Authorization headers it was sent."""

    seen: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.seen.append(self.headers.get("Authorization", ""))
        self.send_response(401)
        self.send_header("WWW-Authenticate", "Bearer")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_GET

    def log_message(self, *args: Any) -> None:
        pass


def test_serve_dask_gateway_sends_the_token_as_a_bearer_and_says_when_it_is_refused(
    tmp_path: Path,
) -> None:
    gateway = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    threading.Thread(target=gateway.serve_forever, daemon=True).start()
    token = "desp-token-0c9a-never-printed"
    try:
        done = subprocess.run(
            [
                *hook_processor_command(),
                "serve",
                str(HELLO_WORLD),
                "--port",
                "0",
                "--executor",
                "dask",
                "--dask-gateway",
                f"http://127.0.0.1:{gateway.server_address[1]}",
            ],
            capture_output=True,
            text=True,
            env=child_env({**ENV, "HOOK_DASK_GATEWAY_TOKEN": token}),
            cwd=tmp_path,
            timeout=60,
        )
    finally:
        gateway.shutdown()
        gateway.server_close()
    assert done.returncode == 2, done.stderr
    assert "cannot connect to the Dask cluster there" in done.stderr
    assert "HOOK_DASK_GATEWAY_TOKEN" in done.stderr
    assert f"Bearer {token}" in _Refusing.seen
    assert token not in done.stderr and token not in done.stdout


def test_a_worker_without_the_service_key_or_with_another_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sealed = seal(KEY, {"S3_SECRET_KEY": IN_SECRET})
    monkeypatch.setenv("HOOK_DASK_KEY", KEY)
    assert _unsealed(sealed, "tcp://w:1") == {"S3_SECRET_KEY": IN_SECRET}
    monkeypatch.delenv("HOOK_DASK_KEY")
    assert "tcp://w:1 has no HOOK_DASK_KEY" in str(_unsealed(sealed, "tcp://w:1"))
    monkeypatch.setenv("HOOK_DASK_KEY", new_key())
    message = str(_unsealed(sealed, "tcp://w:1"))
    assert "is not the service's" in message and IN_SECRET not in message
    assert IN_SECRET.encode() not in sealed


def test_the_items_child_never_gets_the_workers_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_DASK_KEY", KEY)
    monkeypatch.setenv("HOOK_DASK_GATEWAY_TOKEN", "t0ken")
    env = _child_environment({"S3_BUCKET": "b"}, "http://127.0.0.1:9")
    assert env["S3_BUCKET"] == "b" and env["PYTHONUNBUFFERED"] == "1"
    assert KEY not in env.values() and "t0ken" not in env.values()
