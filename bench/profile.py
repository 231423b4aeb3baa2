"""`python -m bench profile`: where one hook-processor transfer spends its time, by py-spy.

One run of hook-processor (``bench/_ours.py`` stage-in or publish, or a whole ``exec`` round
trip) against a fresh ``rclone serve s3`` seeded with the data set, recorded by
``py-spy record --format raw`` (every thread, idle samples left out, so a sample is a thread on
the CPU or waiting for the GIL). Prints the wall and CPU split of the process (user, system) and
the functions with the most samples, by own samples (the leaf frame) and by samples below them.
"""

from __future__ import annotations

import collections
import shutil
import tempfile
import time
from pathlib import Path

from bench import datasets as ds_mod
from bench import runner, tools
from bench import servers as srv_mod
from bench.roundtrip import PROJECT
from bench.startup import exec_command


def _py_spy() -> str:
    exe = tools.find_exe("py-spy")
    if exe is None:
        raise SystemExit("py-spy not installed: pip install py-spy (bench/requirements.txt)")
    return exe


def _frame(raw: str) -> str:
    """``func (path/to/module.py:12)`` -> ``func (module.py)``."""
    name, _, where = raw.partition(" (")
    return f"{name} ({Path(where.rsplit(':', 1)[0]).name})" if where else name


def summarise(raw_text: str, top: int) -> dict:
    own: collections.Counter[str] = collections.Counter()
    below: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw_text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_frame(f) for f in stack.split(";")]
        total += n
        own[frames[-1]] += n
        for f in set(frames[1:]):  # frames[0] is the thread
            below[f] += n
    return {
        "samples": total,
        "own": [(f, n, round(100 * n / total, 1)) for f, n in own.most_common(top)]
        if total
        else [],
        "below": [(f, n, round(100 * n / total, 1)) for f, n in below.most_common(top)]
        if total
        else [],
    }


def run(args) -> dict:  # noqa: ANN001
    spy = _py_spy()
    dataset = ds_mod.ensure(Path(args.data_dir).resolve(), args.dataset, args.scale, log=runner.log)
    work = Path(tempfile.mkdtemp(prefix="bench-profile-", dir=args.work_dir))
    src = f"src/{dataset.name}"
    try:
        with srv_mod.Server(
            "rclone", workdir=work, preload=(dataset.root, f"{runner.BUCKET}/{src}")
        ) as server:
            env = tools.tool_env(
                server.endpoint_url, srv_mod.ACCESS_KEY, srv_mod.SECRET_KEY, srv_mod.REGION
            )
            if args.direction == "roundtrip":
                argv, how = exec_command()
                if argv is None:
                    raise SystemExit(f"hook-processor exec cannot be run: {how}")
                argv = [*argv, "--project", str(PROJECT)]
                env = tools.exec_env(
                    env,
                    server.endpoint_url,
                    runner.BUCKET,
                    src,
                    "up/profile",
                    work / "exec",
                    srv_mod.ACCESS_KEY,
                    srv_mod.SECRET_KEY,
                )
                (work / "exec").mkdir()
            else:
                local = work / "dest" if args.direction == "download" else dataset.root
                local.mkdir(exist_ok=True)
                prefix = src if args.direction == "download" else "up/profile"
                argv = tools.command(
                    "hook-processor",
                    args.direction,
                    server.endpoint_url,
                    runner.BUCKET,
                    prefix,
                    local,
                )
            raw = work / "profile.txt"
            spy_argv = [
                spy,
                "record",
                "--format",
                "raw",
                "--rate",
                str(args.rate),
                "--output",
                str(raw),
                "--",
                *argv,
            ]
            began = time.perf_counter()
            m = tools.run_measured(spy_argv, env, timeout=args.timeout)
            wall = time.perf_counter() - began
            if m.returncode != 0 or not raw.exists():
                raise SystemExit(f"profiled run failed ({m.returncode}): {m.stderr[-1500:]}")
            result = summarise(raw.read_text(), args.top)
            result.update(
                command=tools.display(spy_argv),
                wall_s=round(wall, 3),
                cpu_user_s=round(m.cpu_user_s, 3),  # py-spy's own CPU included
                cpu_sys_s=round(m.cpu_sys_s, 3),
                dataset=dataset.name,
                direction=args.direction,
                engine=tools.engine_of(m.stderr)[0],
            )
            if args.keep:
                shutil.copyfile(raw, args.keep)
            return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def render(result: dict) -> str:
    lines = [
        f"{result['direction']} {result['dataset']}: wall {result['wall_s']:.3f} s, CPU user "
        f"{result['cpu_user_s']:.3f} s + system {result['cpu_sys_s']:.3f} s (py-spy's "
        f"included), {result['samples']} samples",
        f"command: {result['command']}",
        "",
        "| function (module) | own samples | % |",
        "|---|---:|---:|",
    ]
    lines += [f"| {f} | {n} | {p} |" for f, n, p in result["own"]]
    lines += ["", "| function (module) | samples below it | % |", "|---|---:|---:|"]
    lines += [f"| {f} | {n} | {p} |" for f, n, p in result["below"]]
    return "\n".join(lines)
