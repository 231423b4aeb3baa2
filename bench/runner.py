"""`python -m bench run`: data sets x directions x servers x tools, alternating, N rounds."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as dist_version
from pathlib import Path

from bench import datasets as ds_mod
from bench import roundtrip, startup, tools
from bench import servers as srv_mod
from bench.tools import REPO_ROOT, TOOLS

BUCKET = "bench"
DIRECTIONS = ("download", "upload")  # download = stage-in, upload = publish
ROUNDTRIP = roundtrip.ROUNDTRIP  # a third "direction": one exec (or s5cmd down + up) per round
SCHEMA = 2  # 2: roundtrip rows, engine per hook-processor round, settings.hook_s3_engine


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- machine and versions -------------------------------------------------------------------------


def _meminfo_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def host_kind() -> str:
    kind = os.environ.get("BENCH_HOST_KIND")
    if kind:
        return kind
    return f"{os.cpu_count()}cpu-{platform.machine()}" + ("-ci" if os.environ.get("CI") else "")


def machine_info() -> dict:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "host_kind": host_kind(),
        "nproc": usable,
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": _meminfo_gib(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def _dist(name: str) -> str | None:
    try:
        return dist_version(name)
    except PackageNotFoundError:
        return None


def versions() -> dict:
    commit = (
        subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True
        ).stdout.strip()
        or None
    )
    dirty = bool(
        subprocess.run(
            ["git", "status", "--porcelain", "--", "hook_processor"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    return {
        "hook-processor": tools.version("hook-processor"),
        "git_commit": commit,
        "hook_processor_dirty": dirty,
        "boto3": _dist("boto3"),
        "botocore": _dist("botocore"),
        "s3transfer": _dist("s3transfer"),
        "s5cmd": tools.version("s5cmd"),
        "aws-cli": tools.version("aws-cli"),
        "rclone": srv_mod.version("rclone"),
        "moto": srv_mod.version("moto"),
    }


# --- server-side helpers (outside any timed section) ----------------------------------------------


def _list(s3, prefix: str) -> dict[str, tuple[int, str]]:  # noqa: ANN001
    found: dict[str, tuple[int, str]] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix + "/"):
        for obj in page.get("Contents", []):
            found[obj["Key"][len(prefix) + 1 :]] = (obj["Size"], obj["ETag"].strip('"'))
    return found


def _delete_prefix(s3, prefix: str) -> None:  # noqa: ANN001
    keys = [prefix + "/" + rel for rel in _list(s3, prefix)]
    for i in range(0, len(keys), 1000):
        batch = keys[i : i + 1000]
        try:
            s3.delete_objects(
                Bucket=BUCKET, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
            )
        except Exception:  # noqa: BLE001 - a server without DeleteObjects: one by one
            for key in batch:
                s3.delete_object(Bucket=BUCKET, Key=key)


def _seed(s3, dataset: ds_mod.Dataset, prefix: str) -> float:  # noqa: ANN001
    began = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        list(
            pool.map(
                lambda rel: s3.upload_file(str(dataset.root / rel), BUCKET, f"{prefix}/{rel}"),
                sorted(dataset.files),
            )
        )
    problems = _compare_listing(dataset, _list(s3, prefix), extra_ok=())
    if problems:
        raise RuntimeError(f"seeding {dataset.name} failed: {problems[:5]}")
    return time.perf_counter() - began


def _compare_listing(
    dataset: ds_mod.Dataset, listing: dict[str, tuple[int, str]], extra_ok: tuple[str, ...]
) -> list[str]:
    """Sizes of every key; content via the ETag where it is a plain MD5 (single-part objects)."""
    problems = [f"missing {rel}" for rel in sorted(set(dataset.files) - set(listing))]
    for rel, (size, etag) in sorted(listing.items()):
        if rel not in dataset.files:
            if rel not in extra_ok:
                problems.append(f"unexpected key {rel}")
            continue
        want_size, want_md5 = dataset.files[rel]
        if size != want_size:
            problems.append(f"{rel}: size {size} != {want_size}")
        elif "-" not in etag and len(etag) == 32 and etag != want_md5:
            problems.append(f"{rel}: ETag {etag} != md5 {want_md5}")
    return problems


# --- the run --------------------------------------------------------------------------------------


def _summarise(rows: list[dict], dataset_bytes: dict[str, int]) -> None:
    by_key = {(r["server"], r["dataset"], r["direction"], r["tool"]): r for r in rows}
    for row in rows:
        ok_times = [x["seconds"] for x in row["rounds"] if x["ok"]]
        row["ok"] = bool(row["rounds"]) and len(ok_times) == len(row["rounds"])
        row["ok_rounds"] = len(ok_times)
        row["median_s"] = round(statistics.median(ok_times), 4) if ok_times else None
        row["mb_s"] = (
            round(dataset_bytes[row["dataset"]] / row["median_s"] / 1e6, 1)
            if row["median_s"]
            else None
        )
        rss = [x["max_rss_mb"] for x in row["rounds"] if x["ok"]]
        row["peak_rss_mb"] = round(max(rss), 1) if rss else None
        cpu = [
            x["cpu_user_s"] + x["cpu_sys_s"] for x in row["rounds"] if x["ok"] and "cpu_user_s" in x
        ]
        row["median_cpu_s"] = round(statistics.median(cpu), 3) if cpu else None
    for row in rows:  # throughput ratios (higher is better) against peers of the same run
        for peer, field in (("s5cmd", "ratio_s5cmd"), ("aws-cli", "ratio_aws_cli")):
            other = by_key.get((row["server"], row["dataset"], row["direction"], peer))
            row[field] = (
                round(other["median_s"] / row["median_s"], 3)
                if other and other["median_s"] and row["median_s"]
                else None
            )


def command_templates(tool_names: list[str]) -> dict:
    out = {}
    for tool in tool_names:
        out[tool] = {
            d: tools.display(
                tools.command(tool, d, "{endpoint}", BUCKET, "{prefix}", Path("{dir}"))
            )
            for d in DIRECTIONS
        }
    return out


def run(args) -> Path:  # noqa: ANN001, C901
    started = dt.datetime.now(dt.UTC)
    data_dir = Path(args.data_dir).resolve()
    names = [n for n in args.datasets.split(",") if n]
    server_kinds = [s for s in args.servers.split(",") if s]
    wanted = [t for t in args.tools.split(",") if t]
    for t in wanted:
        if t not in TOOLS:
            raise SystemExit(f"unknown tool {t!r}; known: {', '.join(TOOLS)}")
    use_tools = [t for t in wanted if tools.available(t)]
    skipped = {t: "not installed" for t in wanted if t not in use_tools}
    for t in skipped:
        log(f"skipping {t}: not installed (pip install -r bench/requirements.txt)")
    for kind in server_kinds:
        if not srv_mod.Server.available(kind):
            raise SystemExit(f"server {kind} not installed (pip install -r bench/requirements.txt)")

    rt_tools = [t for t in roundtrip.TOOLS if t in use_tools] if args.roundtrip else []
    data = [ds_mod.ensure(data_dir, n, args.scale, log=log) for n in names]
    out = (
        Path(args.out)
        if args.out
        else (REPO_ROOT / "bench" / "results" / f"{started:%Y-%m-%d}-{host_kind()}.json")
    )
    results: dict = {
        "schema": SCHEMA,
        "date": started.isoformat(timespec="seconds"),
        "machine": machine_info(),
        "versions": versions(),
        "settings": {
            "rounds": args.rounds,
            "scale": args.scale,
            "datasets": names,
            "servers": server_kinds,
            "tools": use_tools,
            "verify_content": args.verify,
            "rss_method": tools.rss_method(),
            "hook_processor_settings": "TransferSettings() defaults",
            "hook_s3_engine": os.environ.get("HOOK_S3_ENGINE") or None,  # None: the default
            "roundtrip": bool(rt_tools),
        },
        "skipped_tools": skipped,
        "datasets": {d.name: {"files": d.count, "bytes": d.bytes} for d in data},
        "commands": command_templates(use_tools),
        "roundtrip_commands": roundtrip.commands() if rt_tools else {},
        "servers": {},
        "rows": [],
        "startup": [],
    }
    rows = results["rows"]
    work = Path(tempfile.mkdtemp(prefix="bench-run-", dir=args.work_dir))
    try:
        for kind in server_kinds:
            with srv_mod.Server(kind, workdir=work) as server:
                results["servers"][kind] = {
                    "command": tools.display(server.command),
                    "started_in_s": round(server.started_in, 3),
                }
                log(f"[{kind}] listening at {server.endpoint_url} after {server.started_in:.2f} s")
                s3 = server.client()
                s3.create_bucket(Bucket=BUCKET)
                env = tools.tool_env(
                    server.endpoint_url, srv_mod.ACCESS_KEY, srv_mod.SECRET_KEY, srv_mod.REGION
                )
                if kind == "moto":
                    # As `hook-processor run` does for its own moto, which reads the whole
                    # object for every ranged GET (README, HOOK_DOWNLOAD_RANGES).
                    env["HOOK_DOWNLOAD_RANGES"] = "16"
                    results["servers"][kind]["hook_download_ranges"] = 16
                for dataset in data:
                    src_prefix = f"src/{dataset.name}"
                    seeded = _seed(s3, dataset, src_prefix)
                    log(
                        f"[{kind}] {dataset.name}: {dataset.count} files, "
                        f"{dataset.bytes / 1e6:.1f} MB seeded in {seeded:.1f} s"
                    )
                    table = {
                        (d, t): {
                            "server": kind,
                            "dataset": dataset.name,
                            "direction": d,
                            "tool": t,
                            "rounds": [],
                        }
                        for d, ts in (*((d, use_tools) for d in DIRECTIONS), (ROUNDTRIP, rt_tools))
                        for t in ts
                    }
                    for r in range(args.rounds):
                        order = use_tools[r % len(use_tools) :] + use_tools[: r % len(use_tools)]
                        for direction in DIRECTIONS:
                            for tool in order:
                                table[(direction, tool)]["rounds"].append(
                                    _one(
                                        s3,
                                        env,
                                        server,
                                        dataset,
                                        direction,
                                        tool,
                                        r,
                                        src_prefix,
                                        work,
                                        args,
                                    )
                                )
                        shift = r % len(rt_tools) if rt_tools else 0
                        for tool in rt_tools[shift:] + rt_tools[:shift]:
                            table[(ROUNDTRIP, tool)]["rounds"].append(
                                _roundtrip_one(
                                    s3, env, server, dataset, tool, r, src_prefix, work, args
                                )
                            )
                    rows.extend(table.values())
                    _delete_prefix(s3, src_prefix)
                if args.startup_rounds:
                    results["startup"].append(startup.measure(server, args.startup_rounds, log=log))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _summarise(rows, {d.name: d.bytes for d in data})
    results["machine"]["loadavg_at_end"] = (
        list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    )
    results["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    results["wall_s"] = round((dt.datetime.now(dt.UTC) - started).total_seconds(), 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    log(f"wrote {out} ({results['wall_s']} s)")
    return out


def _one(s3, env, server, dataset, direction, tool, r, src_prefix, work, args) -> dict:  # noqa: ANN001
    if direction == "download":
        local = work / "dest"
        shutil.rmtree(local, ignore_errors=True)
        local.mkdir()
        prefix = src_prefix
    else:
        local = dataset.root
        prefix = f"up/{dataset.name}/{tool}/r{r}"
        _delete_prefix(s3, prefix)
    argv = tools.command(tool, direction, server.endpoint_url, BUCKET, prefix, local)
    m = tools.run_measured(argv, env, timeout=args.timeout)
    rec: dict = {
        "round": r,
        "seconds": round(m.seconds, 4),
        "max_rss_mb": round(m.max_rss_mb, 1),
        "cpu_user_s": round(m.cpu_user_s, 3),
        "cpu_sys_s": round(m.cpu_sys_s, 3),
        "exit_code": m.returncode,
    }
    problems: list[str] = []
    if m.returncode != 0:
        problems.append(f"exit code {m.returncode}: {m.stderr.strip()[-600:]}")
    else:
        if direction == "download":
            problems = ds_mod.compare_tree(dataset, local, content=args.verify)
        else:
            extra = ("_manifest.json",) if tool == "hook-processor" else ()
            problems = _compare_listing(dataset, _list(s3, prefix), extra_ok=extra)
    if tool == "hook-processor" and m.returncode == 0:
        with contextlib.suppress(ValueError, IndexError):
            rec["inner"] = json.loads(m.stdout.strip().splitlines()[-1])
            rec["engine"] = rec["inner"].get("engine")
            rec["engine_choice"] = rec["inner"].get("engine_choice")
    rec["ok"] = not problems
    if problems:
        rec["problems"] = problems[:10]
    if direction == "download":
        shutil.rmtree(local, ignore_errors=True)
    else:
        _delete_prefix(s3, prefix)
    mbs = dataset.bytes / m.seconds / 1e6
    verdict = "ok" if not problems else "FAILED: " + problems[0][:200]
    log(
        f"[{server.kind}] {dataset.name:10s} {direction:8s} r{r} {tool:14s} {m.seconds:8.3f} s "
        f"{mbs:8.1f} MB/s {m.max_rss_mb:7.1f} MB  {verdict}"
    )
    return rec


def _roundtrip_one(s3, env, server, dataset, tool, r, src_prefix, work, args) -> dict:  # noqa: ANN001
    """One round trip of ``tool`` (exec, or s5cmd down + up), checked, its output deleted."""
    prefix = f"up/{dataset.name}/{ROUNDTRIP}/{tool}/r{r}"
    _delete_prefix(s3, prefix)
    local = work / "rt-dest"
    if tool == "hook-processor":
        m, facts = roundtrip.run_exec(
            env, server.endpoint_url, BUCKET, src_prefix, prefix, work / "rt-exec", args.timeout
        )
    else:
        m, facts = roundtrip.run_s5cmd(
            env, server.endpoint_url, BUCKET, src_prefix, prefix, local, args.timeout
        )
    rec: dict = {
        "round": r,
        "seconds": round(m.seconds, 4),
        "max_rss_mb": round(m.max_rss_mb, 1),
        "cpu_user_s": round(m.cpu_user_s, 3),
        "cpu_sys_s": round(m.cpu_sys_s, 3),
        "exit_code": m.returncode,
        **facts,
    }
    problems: list[str] = []
    if m.returncode != 0:
        problems.append(f"exit code {m.returncode}: {m.stderr.strip()[-600:]}")
    else:
        if tool == "hook-processor" and facts.get("status") != "completed":
            problems.append(f"result.json status {facts.get('status')!r}")
        if tool == "s5cmd":
            problems += ds_mod.compare_tree(dataset, local, content=args.verify)
        extra = ("_manifest.json",) if tool == "hook-processor" else ()
        problems += _compare_listing(dataset, _list(s3, prefix), extra_ok=extra)
    rec["ok"] = not problems
    if problems:
        rec["problems"] = problems[:10]
    shutil.rmtree(local, ignore_errors=True)
    _delete_prefix(s3, prefix)
    verdict = "ok" if not problems else "FAILED: " + problems[0][:200]
    engine = f" engine {facts['engine']}" if facts.get("engine") else ""
    log(
        f"[{server.kind}] {dataset.name:10s} {ROUNDTRIP:9s} r{r} {tool:14s} {m.seconds:8.3f} s "
        f"{dataset.bytes / m.seconds / 1e6:8.1f} MB/s {m.max_rss_mb:7.1f} MB{engine}  {verdict}"
    )
    return rec
