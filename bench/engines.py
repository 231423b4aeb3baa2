"""Side by side: boto3's client vs hook-processor's lean data path (``hook_processor/_fast.py``).

    python -m bench engines [--objects 1000] [--size 32768] [--rounds 3] [--servers rclone]

On one local server (fresh, like ``run``), per engine and round: N GetObject and N PutObject of
``--size`` bytes on 16 threads (the runtime's default concurrency) and on 1 thread, and a whole
``stage_in`` / ``publish_private`` of those N objects through the runtime's code with the boto3
client forced (a client without the lean-path mark) or the lean path. Prints requests per second
(wall) and the client's CPU per request (``time.process_time``: this process, all threads) —
the cost that bounds small files when the client shares 2 cores with the server. The engines
alternate within each round; the medians are printed and written as JSON (``--out``).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench import servers as srv_mod
from bench.runner import BUCKET, machine_info, versions

ENGINES = ("boto3", "lean")


def _clients(server: srv_mod.Server, concurrency: int) -> dict[str, Any]:
    from pydantic import SecretStr

    from hook_processor import _fast, storage

    settings = storage.TransferSettings(concurrency=concurrency)
    target = storage.S3Target(
        server.endpoint_url, SecretStr(srv_mod.ACCESS_KEY), SecretStr(srv_mod.SECRET_KEY)
    )
    lean_client = storage.make_client(target, settings)
    boto_client = storage.make_client(target, settings)
    delattr(boto_client, _fast.MARK)  # unmarked: the runtime's code uses boto3 for it
    fast = _fast.for_client(lean_client, settings)
    assert fast is not None, "the lean path is not available for this server"
    return {
        "settings": settings,
        "boto3": boto_client,
        "lean": fast,
        "clients": {"boto3": boto_client, "lean": lean_client},
    }


def _timed(fn: Any, items: list[Any], threads: int) -> tuple[float, float]:
    began, cpu = time.perf_counter(), time.process_time()
    if threads == 1:
        for item in items:
            fn(item)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(fn, items))
    return time.perf_counter() - began, time.process_time() - cpu


def _one_round(c: dict[str, Any], keys: list[str], body: bytes, work: Path) -> dict[str, Any]:
    from hook_processor import storage

    out: dict[str, Any] = {}
    n = len(keys)
    for engine in ENGINES:
        api = c[engine]

        def get(key: str, api: Any = api) -> None:
            stream = api.get_object(Bucket=BUCKET, Key=key)["Body"]
            while stream.read(1024 * 1024):
                pass
            stream.close()

        def put(key: str, api: Any = api, engine: str = engine) -> None:
            api.put_object(Bucket=BUCKET, Key=key.replace("src/", f"put/{engine}/", 1), Body=body)

        for threads in (16, 1):
            for op, fn in (("GET", get), ("PUT", put)):
                wall, cpu = _timed(fn, keys, threads)
                out[f"{engine} {op} x{threads}"] = {
                    "req_s": round(n / wall, 1),
                    "cpu_us_per_req": round(1e6 * cpu / n, 1),
                }
        client, settings = c["clients"][engine], c["settings"]
        dest = work / f"dl-{engine}-{uuid.uuid4().hex[:6]}"
        wall, cpu = _timed(
            lambda _, c=client, d=dest, s=settings: storage.stage_in(c, BUCKET, "src/", d, s),
            [None],
            1,
        )
        out[f"{engine} stage_in"] = {"seconds": round(wall, 3), "cpu_s": round(cpu, 3)}
        wall, cpu = _timed(
            lambda _, c=client, e=engine, d=dest, s=settings: storage.publish_private(
                c,
                BUCKET,
                f"pub/{e}/{uuid.uuid4().hex[:6]}",
                d,
                s,
                manifest_extra={},
            ),
            [None],
            1,
        )
        out[f"{engine} publish_private"] = {"seconds": round(wall, 3), "cpu_s": round(cpu, 3)}
        shutil.rmtree(dest)
    return out


def run(args: Any) -> Path:
    results: dict[str, Any] = {
        "schema": "hook-processor-bench-engines/1",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_info(),
        "versions": versions(),
        "settings": {"objects": args.objects, "size": args.size, "rounds": args.rounds},
        "servers": {},
    }
    body = os.urandom(args.size)
    for kind in args.servers.split(","):
        work = Path(tempfile.mkdtemp(prefix="bench-engines-", dir=args.work_dir))
        try:
            with srv_mod.Server(kind, work) as server:
                print(f"[{kind}] listening at {server.endpoint_url}", flush=True)
                c = _clients(server, 16)
                seed = c["boto3"]
                seed.create_bucket(Bucket=BUCKET)
                keys = [f"src/d{i % 10}/o{i:05d}.bin" for i in range(args.objects)]
                with ThreadPoolExecutor(16) as pool:
                    list(
                        pool.map(
                            lambda k, s=seed: s.put_object(Bucket=BUCKET, Key=k, Body=body), keys
                        )
                    )
                rounds = []
                for r in range(args.rounds):
                    one = _one_round(c, keys, body, work)
                    rounds.append(one)
                    print(
                        f"[{kind}] round {r}: " + "; ".join(f"{k} {v}" for k, v in one.items()),
                        flush=True,
                    )
                medians = {
                    name: {
                        field: round(statistics.median(r[name][field] for r in rounds), 3)
                        for field in rounds[0][name]
                    }
                    for name in rounds[0]
                }
                results["servers"][kind] = {"rounds": rounds, "median": medians}
                _print_table(kind, args, medians)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    out = Path(args.out) if args.out else None
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {out}")
    return out or Path("-")


def _print_table(kind: str, args: Any, m: dict[str, dict[str, float]]) -> None:
    print(f"\n[{kind}] medians of {args.rounds} rounds, {args.objects} objects of {args.size} B")
    print("| operation | boto3 req/s | lean req/s | boto3 CPU µs/req | lean CPU µs/req |")
    print("|---|---|---|---|---|")
    for op in ("GET x16", "PUT x16", "GET x1", "PUT x1"):
        b, f = m[f"boto3 {op}"], m[f"lean {op}"]
        print(
            f"| {op} | {b['req_s']} | {f['req_s']} | {b['cpu_us_per_req']} | "
            f"{f['cpu_us_per_req']} |"
        )
    print("| runtime code | boto3 s (CPU s) | lean s (CPU s) | | |")
    for op in ("stage_in", "publish_private"):
        b, f = m[f"boto3 {op}"], m[f"lean {op}"]
        print(f"| {op} | {b['seconds']} ({b['cpu_s']}) | {f['seconds']} ({f['cpu_s']}) | | |")
    print(flush=True)
