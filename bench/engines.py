"""Side by side, S3 request engines: the runtime's three (boto3's client, the lean data path
``hook_processor/_s3/lean.py``, obstore ``hook_processor/_s3/obstore_engine.py``), obstore on its
own async API (``obstore-async``) and the AWS CRT (``awscrt``).

    python -m bench engines [--objects 1000] [--size 32768] [--rounds 3] [--servers rclone,moto]
                            [--engines boto3,lean,obstore,obstore-async,crt] [--datasets ...]
                            [--scale 1.0]

On each local server (fresh, like ``run``), per round, the engines one after the other in a
rotated order (round r starts with engine r mod n):

- **requests**: N GetObject and N PutObject of ``--size`` bytes with ``concurrency`` (16, the
  runtime's default) in flight and with 1, in-process. Printed: requests per second (wall) and the
  client's CPU per request (``time.process_time``: this process, every thread, Rust and C ones
  included) — the cost that bounds small files when the client shares 2 cores with the server;
- **transfers**: a whole stage-in (every object of a data set of ``bench/datasets.py`` into an
  empty folder) and a publish (the data set's folder to a fresh prefix), wall and CPU seconds.
  Downloads are checked by the size of every file (``--verify-content``: and its md5), uploads
  by listing (every key, its size and, for single-part objects, ETag = md5), outside the timing.

Each engine is used the way it is meant to be used (its module says how): boto3, the lean
path and obstore (``obstore``) through the runtime's own code and thread pool
(``bench/_engine_ours.py``), obstore alone (``obstore-async``) through its async API under a
semaphore of the runtime's concurrency (``bench/_engine_obstore.py``), the CRT with every
request submitted at once to its own scheduler (``bench/_engine_crt.py``). A failed operation is
recorded (``ok: false`` and the error) and the run goes on; medians are over the
rounds that passed. Results as JSON with ``--out``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench import datasets as ds_mod
from bench import servers as srv_mod
from bench.runner import (
    BUCKET,
    _compare_listing,
    _delete_prefix,
    _dist,
    _list,
    _seed,
    machine_info,
    versions,
)

ENGINES = ("boto3", "lean", "obstore", "obstore-async", "crt")
_NEEDS = {
    "obstore": "obstore",
    "obstore-async": "obstore",
    "crt": "awscrt",
}  # engine -> the module it imports
DIRECTIONS = ("stage-in", "publish")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def make_engine(
    name: str,
    endpoint_url: str,
    bucket: str,
    settings: Any,
    access_key: str,
    secret_key: str,
    region: str,
) -> Any:
    """One engine's adapter: get_all, put_all, stage_in, publish, close, extra_keys."""
    from bench._engine_crt import CrtEngine
    from bench._engine_obstore import ObstoreEngine
    from bench._engine_ours import RuntimeEngine

    args = (endpoint_url, bucket, settings, access_key, secret_key, region)
    if name in ("boto3", "lean", "obstore"):  # the runtime's engines, through its own code
        return RuntimeEngine(name, *args)
    if name == "obstore-async":
        return ObstoreEngine(*args)
    return CrtEngine(*args)


def check_engines(names: list[str]) -> None:
    for name in names:
        if name not in ENGINES:
            raise SystemExit(f"unknown engine {name!r}; known: {', '.join(ENGINES)}")
        module = _NEEDS.get(name)
        if module and importlib.util.find_spec(module) is None:
            raise SystemExit(
                f"engine {name} needs the package {module}: pip install -e '.[bench]' "
                f"(or leave it out with --engines)"
            )


def _timed(fn: Callable[[], None]) -> tuple[float, float, str | None]:
    """(wall s, CPU s, error or None) of one call."""
    began, cpu, error = time.perf_counter(), time.process_time(), None
    try:
        fn()
    except Exception as err:  # noqa: BLE001 - recorded, the run goes on
        error = f"{type(err).__name__}: {err}"[:600]
    return time.perf_counter() - began, time.process_time() - cpu, error


def _rotated(names: list[str], r: int) -> list[str]:
    return names[r % len(names) :] + names[: r % len(names)]


# --- requests ------------------------------------------------------------------------------------


def _requests_round(
    engines: dict[str, Any], keys: list[str], body: bytes, concurrency: int, r: int
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    n = len(keys)
    for name in _rotated(list(engines), r):
        engine = engines[name]
        puts = [key.replace("src/", f"put/{name}/", 1) for key in keys]
        for in_flight in (concurrency, 1):
            for op, fn in (
                ("GET", lambda e=engine, f=in_flight: e.get_all(keys, f)),
                ("PUT", lambda e=engine, f=in_flight, p=puts: e.put_all(p, body, f)),
            ):
                wall, cpu, error = _timed(fn)
                rec: dict[str, Any] = {"ok": error is None}
                if error:
                    rec.update(req_s=None, cpu_us_per_req=None, error=error)
                    log(f"  {name} {op} x{in_flight} FAILED: {error[:300]}")
                else:
                    rec.update(req_s=round(n / wall, 1), cpu_us_per_req=round(1e6 * cpu / n, 1))
                out[f"{name} {op} x{in_flight}"] = rec
    return out


# --- whole transfers -----------------------------------------------------------------------------


def _transfer(
    name: str,
    engine: Any,
    s3: Any,
    dataset: ds_mod.Dataset,
    direction: str,
    r: int,
    work: Path,
    verify_content: bool,
) -> dict[str, Any]:
    if direction == "stage-in":
        local = work / f"dest-{name}"
        shutil.rmtree(local, ignore_errors=True)
        local.mkdir()
        wall, cpu, error = _timed(lambda: engine.stage_in(f"src/{dataset.name}", local))
        problems = [error] if error else ds_mod.compare_tree(dataset, local, content=verify_content)
        shutil.rmtree(local, ignore_errors=True)
    else:
        prefix = f"up/{dataset.name}/{name}/r{r}"
        _delete_prefix(s3, prefix)
        wall, cpu, error = _timed(lambda: engine.publish(dataset.root, prefix))
        problems = (
            [error]
            if error
            else _compare_listing(dataset, _list(s3, prefix), extra_ok=engine.extra_keys)
        )
        _delete_prefix(s3, prefix)
    rec: dict[str, Any] = {"seconds": round(wall, 4), "cpu_s": round(cpu, 4), "ok": not problems}
    if problems:
        rec["problems"] = problems[:5]
    verdict = "ok" if not problems else "FAILED: " + problems[0][:300]
    log(
        f"  {dataset.name:10s} {direction:8s} r{r} {name:8s} {wall:8.3f} s (CPU {cpu:6.3f} s) "
        f"{dataset.bytes / wall / 1e6:8.1f} MB/s  {verdict}"
    )
    return rec


def _sha256_pass(dataset: ds_mod.Dataset) -> dict[str, float]:
    """What the runtime's publication does on top of sending: sha256 of every byte (manifest)."""

    def run() -> None:
        for rel in dataset.files:
            digest = hashlib.sha256()
            with open(dataset.root / rel, "rb") as fh:
                while block := fh.read(ds_mod.CHUNK):
                    digest.update(block)

    wall, cpu, _ = _timed(run)
    return {"seconds": round(wall, 4), "cpu_s": round(cpu, 4), "ok": True}


def _transfers(
    engines: dict[str, Any], s3: Any, dataset: ds_mod.Dataset, args: Any, work: Path, kind: str
) -> list[dict[str, Any]]:
    seeded = _seed(s3, dataset, f"src/{dataset.name}")
    log(
        f"[{kind}] {dataset.name}: {dataset.count} files, {dataset.bytes / 1e6:.1f} MB "
        f"seeded in {seeded:.1f} s"
    )
    rounds = []
    for r in range(args.rounds):
        one: dict[str, Any] = {f"sha256 {dataset.name}": _sha256_pass(dataset)}
        for direction in DIRECTIONS:
            for name in _rotated(list(engines), r):
                one[f"{name} {direction} {dataset.name}"] = _transfer(
                    name, engines[name], s3, dataset, direction, r, work, args.verify_content
                )
        rounds.append(one)
    _delete_prefix(s3, f"src/{dataset.name}")
    return rounds


# --- the run -------------------------------------------------------------------------------------


def _medians(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in rounds[0]:
        ok = [r[name] for r in rounds if r.get(name, {}).get("ok")]
        fields = [f for f in rounds[0][name] if f not in ("ok", "error", "problems")]
        if ok:
            out[name] = {f: round(statistics.median(x[f] for x in ok), 4) for f in fields}
        else:
            out[name] = {f: None for f in fields} | {"ok": False}
        out[name]["ok_rounds"] = f"{len(ok)}/{len(rounds)}"
    return out


def run(args: Any) -> Path:
    names = [e for e in args.engines.split(",") if e]
    check_engines(names)
    kinds = [s for s in args.servers.split(",") if s]
    for kind in kinds:
        if not srv_mod.Server.available(kind):
            raise SystemExit(f"server {kind} not installed (pip install -r bench/requirements.txt)")
    data = [
        ds_mod.ensure(Path(args.data_dir), d, args.scale, log=log)
        for d in args.datasets.split(",")
        if d
    ]
    from hook_processor import storage

    settings = storage.TransferSettings()  # the runtime's defaults, for every engine
    results: dict[str, Any] = {
        "schema": "hook-processor-bench-engines/2",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_info(),
        "versions": versions() | {"obstore": _dist("obstore"), "awscrt": _dist("awscrt")},
        "settings": {
            "objects": args.objects,
            "size": args.size,
            "rounds": args.rounds,
            "engines": names,
            "concurrency": settings.concurrency,
            "part_size": settings.part_size,
            "multipart_threshold": settings.multipart_threshold,
            "scale": args.scale,
            "verify_content": args.verify_content,
        },
        "datasets": {d.name: {"files": d.count, "bytes": d.bytes} for d in data},
        "servers": {},
    }
    began = time.perf_counter()
    body = random.Random(0).randbytes(args.size)
    for kind in kinds:
        work = Path(tempfile.mkdtemp(prefix="bench-engines-", dir=args.work_dir))
        try:
            with srv_mod.Server(kind, work) as server:
                log(f"[{kind}] listening at {server.endpoint_url}")
                s3 = server.client()
                s3.create_bucket(Bucket=BUCKET)
                engines = {
                    n: make_engine(
                        n,
                        server.endpoint_url,
                        BUCKET,
                        settings,
                        srv_mod.ACCESS_KEY,
                        srv_mod.SECRET_KEY,
                        srv_mod.REGION,
                    )
                    for n in names
                }
                keys = [f"src/small/d{i % 10}/o{i:05d}.bin" for i in range(args.objects)]
                with ThreadPoolExecutor(16) as pool:
                    list(
                        pool.map(
                            lambda k, c=s3: c.put_object(Bucket=BUCKET, Key=k, Body=body), keys
                        )
                    )
                for name, engine in engines.items():  # connections, lazy imports: not timed
                    warm = keys[: 2 * settings.concurrency]
                    engine.get_all(warm, settings.concurrency)
                    engine.put_all([f"warm/{name}/{k}" for k in warm], body, settings.concurrency)
                rounds: list[dict[str, Any]] = []
                for r in range(args.rounds):
                    rounds.append(_requests_round(engines, keys, body, settings.concurrency, r))
                    log(f"[{kind}] requests round {r} done")
                per_set = [_transfers(engines, s3, d, args, work, kind) for d in data]
                for r, one in enumerate(rounds):  # one round = requests + every data set
                    for rounds_of_set in per_set:
                        one.update(rounds_of_set[r])
                for engine in engines.values():
                    engine.close()
                medians = _medians(rounds)
                results["servers"][kind] = {"rounds": rounds, "median": medians}
                _print_tables(kind, args, names, settings.concurrency, data, medians)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    results["wall_s"] = round(time.perf_counter() - began, 1)
    out = Path(args.out) if args.out else None
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {out} ({results['wall_s']} s)")
    return out or Path("-")


def _cell(row: dict[str, Any], *fields: str) -> str:
    if row.get("ok") is False:
        return "failed"
    first, *rest = (row[f] for f in fields)
    ok, total = row["ok_rounds"].split("/")
    partial = f" [{ok}/{total} ok]" if ok != total else ""
    return f"{first}" + "".join(f" ({v})" for v in rest) + partial


def _print_tables(
    kind: str,
    args: Any,
    names: list[str],
    concurrency: int,
    data: list[ds_mod.Dataset],
    m: dict[str, Any],
) -> None:
    print(f"\n[{kind}] medians of {args.rounds} rounds, {args.objects} objects of {args.size} B")
    head = [f"{e} req/s" for e in names] + [f"{e} CPU µs/req" for e in names]
    print("| operation | " + " | ".join(head) + " |")
    print("|---|" + "---:|" * len(head))
    for op in (f"GET x{concurrency}", f"PUT x{concurrency}", "GET x1", "PUT x1"):
        cells = [_cell(m[f"{e} {op}"], "req_s") for e in names]
        cells += [_cell(m[f"{e} {op}"], "cpu_us_per_req") for e in names]
        print(f"| {op} | " + " | ".join(cells) + " |")
    print()
    print("| transfer | " + " | ".join(f"{e} s (CPU s)" for e in names) + " |")
    print("|---|" + "---:|" * len(names))
    for d in data:
        for direction in DIRECTIONS:
            cells = [_cell(m[f"{e} {direction} {d.name}"], "seconds", "cpu_s") for e in names]
            print(f"| {direction} {d.name} | " + " | ".join(cells) + " |")
    sha = ", ".join(f"{d.name} {m[f'sha256 {d.name}']['cpu_s']} s" for d in data)
    print(
        f"\nx{concurrency}: {concurrency} in flight (crt: every request submitted at once, the "
        "CRT schedules them). boto3, lean and obstore whole transfers are the runtime's stage_in / "
        "publish_private; publish_private also hashes every file (sha256, MD5, CRC32) and PUTs a "
        f"_manifest.json. CPU of one sha256 pass over each data set: {sha}.",
        flush=True,
    )
