"""`python -m bench serve`: the local order service under concurrent clients, and what an order
costs over a bare `hook-processor exec` of the same item.

One `hook-processor serve examples/hello_world` is started as a user starts it (a child process,
`--json --port 0`). Then, each phase with `--clients` threads (requests, one session and one
token each) released together:

1. accept: every client POSTs `--orders-per-client` odp-test orders (`sleep_time` 0); orders
   accepted per second = orders / wall time from the release to the last answer. The orders are
   cancelled afterwards, so that their runs do not load the next phases.
2. read: every client makes `--requests-per-client` GETs, cycling over `Workflows`,
   `ProductionOrders?$orderby=Id desc&$top=20` and `BatchOrder(id)/Products`; p50 / p99 latency.
3. overhead: `--rounds` times, one hello_world order (PRIVATE, submitted, polled every 20 ms until
   completed) against `hook-processor exec examples/hello_world` with the same options on the same
   S3 (the served embedded one); medians, and their difference.

Not a timed test: nothing is asserted about speed (tests/test_bench_smoke.py runs it tiny).
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

from bench.tools import REPO_ROOT, find_exe

HELLO_WORLD = REPO_ROOT / "examples" / "hello_world"
SAMPLE = HELLO_WORLD / "sample" / "input" / "example.data"
POLL = 0.02


def log(msg: str) -> None:
    print(msg, file=__import__("sys").stderr, flush=True)


def _command() -> list[str]:
    exe = find_exe("hook-processor")
    return [exe] if exe else [__import__("sys").executable, "-m", "hook_processor"]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(("AWS_", "HOOK_"))}
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    return env


class _Serve:
    def __init__(self, data_dir: Path, concurrency: int) -> None:
        argv = [*_command(), "serve", str(HELLO_WORLD), "--json", "--port", "0"]
        argv += ["--data-dir", str(data_dir), "--concurrency", str(concurrency)]
        self.stderr = (data_dir.parent / "serve.log").open("w")
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=self.stderr, text=True, env=_env()
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"serve did not start; see {data_dir.parent / 'serve.log'}")
        self.info = json.loads(line)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(120)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self.stderr.close()
        return code


def _session(info: dict[str, Any], user: str) -> requests.Session:
    session = requests.Session()
    answer = session.post(
        info["token_url"],
        data={"grant_type": "password", "client_id": "ordering", "username": user, "password": "p"},
        timeout=60,
    )
    answer.raise_for_status()
    session.headers["Authorization"] = "Bearer " + answer.json()["access_token"]
    return session


def _together(clients: int, work: Any) -> tuple[float, list[Any]]:
    """Run ``work(index)`` in ``clients`` threads released at once; (wall seconds, results)."""
    results: list[Any] = [None] * clients
    barrier = threading.Barrier(clients + 1)

    def one(index: int) -> None:
        prepared = work(index, None)  # setup (a session), outside the timed part
        barrier.wait()
        results[index] = work(index, prepared)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - began, results


def _quantiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p99_ms": None}
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000  # noqa: E731
    return {"p50_ms": round(statistics.median(ordered) * 1000, 2), "p99_ms": round(pick(0.99), 2)}


def accept_phase(info: dict[str, Any], clients: int, per_client: int) -> dict[str, Any]:
    root = info["service_root"]

    def work(index: int, session: Any) -> Any:
        if session is None:
            return _session(info, f"client{index}")
        out = []
        for n in range(per_client):
            body = {
                "Name": f"bench {index}-{n}",
                "WorkflowName": "odp-test",
                "IdentifierList": [],
                "Priority": 1,
                "WorkflowOptions": [{"Name": "sleep_time", "Value": 0}],
            }
            t0 = time.perf_counter()
            answer = session.post(root + "BatchOrder/OData.CSC.Order", json=body, timeout=120)
            out.append((time.perf_counter() - t0, answer.status_code, answer.json()))
        return out

    wall, results = _together(clients, work)
    flat = [r for rs in results for r in rs]
    ok = [r for r in flat if r[1] == 201]
    ids = [r[2]["value"]["Id"] for r in ok]
    cancel = _session(info, "bench-cancel")
    for order_id in ids:  # keep the next phases free of their runs
        cancel.post(f"{root}BatchOrder({order_id})/OData.CSC.Cancel", timeout=60)
    return {
        "clients": clients,
        "orders": len(flat),
        "accepted": len(ok),
        "errors": len(flat) - len(ok),
        "wall_s": round(wall, 3),
        "orders_per_s": round(len(ok) / wall, 1) if wall > 0 else None,
        **_quantiles([r[0] for r in ok]),
        "order_ids": ids[:3],
    }


def read_phase(info: dict[str, Any], clients: int, per_client: int, order_id: int) -> dict:
    root = info["service_root"]
    paths = [
        "Workflows",
        "ProductionOrders?$orderby=Id desc&$top=20",
        f"BatchOrder({order_id})/Products",
    ]

    def work(index: int, session: Any) -> Any:
        if session is None:
            return _session(info, f"reader{index}")
        out = []
        for n in range(per_client):
            t0 = time.perf_counter()
            answer = session.get(root + paths[(index + n) % len(paths)], timeout=120)
            out.append((time.perf_counter() - t0, answer.status_code))
        return out

    wall, results = _together(clients, work)
    flat = [r for rs in results for r in rs]
    ok = [r for r in flat if r[1] == 200]
    return {
        "clients": clients,
        "requests": len(flat),
        "errors": len(flat) - len(ok),
        "requests_per_s": round(len(ok) / wall, 1) if wall > 0 else None,
        **_quantiles([r[0] for r in ok]),
    }


def _options(info: dict[str, Any], output_path: str) -> dict[str, str]:
    endpoint, key, secret = info["s3_endpoint"], info["s3_access_key"], info["s3_secret_key"]
    return {
        "source_s3_path": "s3://bench-in/dedl_hello_world/input_file_location",
        "source_s3_endpoint_url": endpoint,
        "source_s3_access_key": key,
        "source_s3_secret_key": secret,
        "output_storage": "PRIVATE",
        "output_s3_path": output_path,
        "output_s3_endpoint_url": endpoint,
        "output_s3_access_key": key,
        "output_s3_secret_key": secret,
    }


def overhead_phase(info: dict[str, Any], rounds: int, work_dir: Path) -> dict[str, Any]:
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=info["s3_endpoint"],
        aws_access_key_id=info["s3_access_key"],
        aws_secret_access_key=info["s3_secret_key"],
        region_name="us-east-1",
    )
    for bucket in ("bench-in", "bench-out"):
        s3.create_bucket(Bucket=bucket)
    s3.upload_file(str(SAMPLE), "bench-in", "dedl_hello_world/input_file_location/example.data")
    root = info["service_root"]
    session = _session(info, "bench-overhead")
    orders, execs, statuses, codes = [], [], [], []
    for r in range(rounds):
        options = _options(info, f"s3://bench-out/order-{r}")
        body = {
            "Name": f"bench overhead {r}",
            "WorkflowName": "dedl_hello_world",
            "IdentifierList": ["Custom Hook"],
            "WorkflowOptions": [{"Name": k, "Value": v} for k, v in options.items()],
        }
        t0 = time.perf_counter()
        answer = session.post(root + "BatchOrder/OData.CSC.Order", json=body, timeout=60)
        answer.raise_for_status()
        order_id = answer.json()["value"]["Id"]
        while True:
            items = session.get(f"{root}BatchOrder({order_id})/Products", timeout=60).json()
            status = items["value"][0]["Status"]
            if status in ("completed", "failed", "cancelled"):
                break
            time.sleep(POLL)
        orders.append(time.perf_counter() - t0)
        statuses.append(status)

        env = _env()
        env.update({k.upper(): v for k, v in _options(info, f"s3://bench-out/exec-{r}").items()})
        env["HOOK_WORK_DIR"] = str(work_dir / f"exec-{r}")
        t0 = time.perf_counter()
        done = subprocess.run(
            [*_command(), "exec", str(HELLO_WORLD)], env=env, capture_output=True, timeout=300
        )
        execs.append(time.perf_counter() - t0)
        codes.append(done.returncode)
    order_s, exec_s = statistics.median(orders), statistics.median(execs)
    return {
        "rounds": rounds,
        "order_statuses": statuses,
        "exec_exit_codes": codes,
        "order_median_s": round(order_s, 3),
        "exec_median_s": round(exec_s, 3),
        "overhead_s": round(order_s - exec_s, 3),
        "poll_interval_s": POLL,
    }


def run(args: Any) -> dict[str, Any]:
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bench-serve-"))
    work.mkdir(parents=True, exist_ok=True)
    log(f"serve: {args.clients} clients; data and logs under {work}")
    served = _Serve(work / "data", args.concurrency)
    try:
        accept = accept_phase(served.info, args.clients, args.orders_per_client)
        log(f"accept: {accept['orders_per_s']} orders/s")
        first = accept["order_ids"][0] if accept["order_ids"] else 1
        read = read_phase(served.info, args.clients, args.requests_per_client, first)
        log(f"read: p50 {read['p50_ms']} ms, p99 {read['p99_ms']} ms")
        overhead = overhead_phase(served.info, args.rounds, work)
    finally:
        stopped = served.stop()
    results = {
        "settings": {k: getattr(args, k) for k in ("clients", "orders_per_client",
                                                   "requests_per_client", "rounds", "concurrency")},
        "accept": accept,
        "read": read,
        "overhead": overhead,
        "serve_exit_code": stopped,
    }  # fmt: skip
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return results


def table(results: dict[str, Any]) -> str:
    a, r, o = results["accept"], results["read"], results["overhead"]
    return "\n".join(
        [
            "| measure | value |",
            "|---|---|",
            f"| orders accepted per second ({a['clients']} clients, {a['orders']} orders) "
            f"| {a['orders_per_s']} (errors {a['errors']}) |",
            f"| POST BatchOrder/OData.CSC.Order latency p50 / p99 "
            f"| {a['p50_ms']} / {a['p99_ms']} ms |",
            f"| GET latency p50 / p99 ({r['clients']} clients, {r['requests']} requests) "
            f"| {r['p50_ms']} / {r['p99_ms']} ms (errors {r['errors']}) |",
            f"| hello_world order, submit to completed (median of {o['rounds']}) "
            f"| {o['order_median_s']} s |",
            f"| bare `hook-processor exec` of the same item | {o['exec_median_s']} s |",
            f"| overhead of an order | {o['overhead_s']} s |",
        ]
    )  # fmt: skip
