"""`python -m bench scaleout`: one order of a CPU-bound processor on the local pool and on Dask.

A generated processor burns `--work` seconds of CPU time per item (process time, so the work is
the same on a loaded machine; wall time then shows the load). For each size of `--items`, the
same order (one identifier per item, TEMPORARY output) is run by

- `local`: `hook-processor serve --concurrency 2` (the default subprocess mode: each item is a
  `hook-processor exec` child), and
- `dask`: `hook-processor serve --executor dask --dask-scheduler ...` with a `dask scheduler`
  and 2 `dask worker --nthreads 1` processes on 127.0.0.1 (each item a child of a worker),

each serve started as a user starts it. Wall time is from the POST to the last item completed;
overhead per item = wall x 2 / items - work (what an item costs beyond its own work with 2 at
a time). Not a timed test: nothing is asserted (tests/test_bench_smoke.py does not run it).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from bench.tools import REPO_ROOT

HELLO_WORLD = REPO_ROOT / "examples" / "hello_world"
PARALLEL = 2

PROCESSOR = """\
import time
from pathlib import Path


def process(input_dir: Path, output_dir: Path) -> None:
    start = time.process_time()
    n = 0
    while time.process_time() - start < WORK:
        n += sum(i * i for i in range(1000))
    (output_dir / "burnt.txt").write_text(str(n))
"""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _project(where: Path, work: float) -> Path:
    import shutil

    folder = where / "cpu_bound"
    shutil.copytree(HELLO_WORLD, folder, ignore=shutil.ignore_patterns("__pycache__", "tests"))
    (folder / "dedl_hello_world" / "processor.py").write_text(PROCESSOR.replace("WORK", repr(work)))
    return folder


def _env(key: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(("AWS_", "HOOK_"))}
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    env["HOOK_DASK_KEY"] = key
    return env


class _Cluster:
    def __init__(self, where: Path, env: dict[str, str]) -> None:
        self.address = f"tcp://127.0.0.1:{_free_port()}"
        self.log = (where / "cluster.log").open("w")
        py = [sys.executable, "-m"]
        self.procs = [
            subprocess.Popen(
                [*py, "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port"]
                + [self.address.rsplit(":", 1)[1], "--dashboard-address", ":0", "--no-show"],
                stdout=self.log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        ]
        for n in range(PARALLEL):
            self.procs.append(
                subprocess.Popen(
                    [*py, "distributed.cli.dask_worker", self.address, "--nthreads", "1"]
                    + ["--host", "127.0.0.1", "--no-dashboard"]
                    + ["--local-directory", str(where / f"worker{n}")],
                    stdout=self.log,
                    stderr=subprocess.STDOUT,
                    env=env,
                )
            )
        from distributed import Client

        with Client(self.address, timeout=60, set_as_default=False) as client:
            client.wait_for_workers(PARALLEL, timeout=120)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.log.close()


def _serve(args: list[str], data_dir: Path, env: dict[str, str]) -> tuple[Any, dict[str, Any]]:
    argv = [sys.executable, "-m", "hook_processor", "serve", *args, "--json", "--port", "0"]
    argv += ["--data-dir", str(data_dir)]
    stderr = (data_dir.parent / f"{data_dir.name}.log").open("w")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise SystemExit(f"serve did not start; see {stderr.name}")
    return proc, json.loads(line)


def _order(info: dict[str, Any], items: int) -> float:
    """POST the order, wait for every item; the wall seconds."""
    session = requests.Session()
    token = session.post(
        info["token_url"],
        data={"grant_type": "password", "client_id": "ordering", "username": "b", "password": "p"},
        timeout=60,
    ).json()["access_token"]
    session.headers["Authorization"] = "Bearer " + token
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=info["s3_endpoint"],
        aws_access_key_id=info["s3_access_key"],
        aws_secret_access_key=info["s3_secret_key"],
        region_name="us-east-1",
    )
    s3.create_bucket(Bucket="bench-in")
    s3.put_object(Bucket="bench-in", Key="input/x.txt", Body=b"x\n")
    body = {
        "Name": f"scaleout {items}",
        "WorkflowName": "dedl_hello_world",
        "IdentifierList": [f"item-{n}" for n in range(items)],
        "WorkflowOptions": [
            {"Name": "source_s3_path", "Value": "s3://bench-in/input/"},
            {"Name": "output_storage", "Value": "TEMPORARY"},
        ],
    }
    began = time.perf_counter()
    answer = session.post(info["service_root"] + "BatchOrder/OData.CSC.Order", json=body)
    answer.raise_for_status()
    order_id = answer.json()["value"]["Id"]
    while True:
        products = session.get(f"{info['service_root']}BatchOrder({order_id})/Products").json()
        statuses = [p["Status"] for p in products["value"]]
        if all(s in ("completed", "failed", "cancelled") for s in statuses):
            wall = time.perf_counter() - began
            if statuses.count("completed") != items:
                raise SystemExit(f"{items} items: {statuses}")
            return wall
        time.sleep(0.2)


def run(args: Any) -> list[dict[str, Any]]:
    from hook_processor.service._dask_task import new_key

    key = new_key()
    env = _env(key)
    rows = []
    with tempfile.TemporaryDirectory(dir=args.work_dir) as tmp:
        where = Path(tmp)
        project = _project(where, args.work)
        for items in args.items:
            for config in args.configs:
                run_dir = where / f"{config}-{items}"
                run_dir.mkdir()
                cluster = _Cluster(run_dir, env) if config == "dask" else None
                flags = ["--concurrency", str(PARALLEL)]
                if cluster is not None:
                    flags = ["--executor", "dask", "--dask-scheduler", cluster.address]
                proc, info = _serve([str(project), *flags], run_dir / "serve", env)
                try:
                    log(f"{config}: {items} items of {args.work} s ...")
                    wall = _order(info, items)
                finally:
                    proc.send_signal(signal.SIGINT)
                    proc.wait(120)
                    if cluster is not None:
                        cluster.stop()
                overhead = wall * PARALLEL / items - args.work
                row = {
                    "executor": config,
                    "items": items,
                    "work_s": args.work,
                    "wall_s": round(wall, 2),
                    "ideal_s": round(items * args.work / PARALLEL, 2),
                    "overhead_per_item_s": round(overhead, 2),
                }
                log(json.dumps(row))
                rows.append(row)
    if args.out:
        Path(args.out).write_text(json.dumps({"rows": rows, "load": os.getloadavg()}, indent=2))
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| executor | items | work/item | wall | ideal (items x work / 2) | overhead/item |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['executor']} | {r['items']} | {r['work_s']} s | {r['wall_s']} s | "
            f"{r['ideal_s']} s | {r['overhead_per_item_s']} s |"
        )
    return "\n".join(lines)
