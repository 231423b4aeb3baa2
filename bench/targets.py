"""Issue 11's targets, each with the value a run measured, met or missed, and the S3 engine used.

Ratios are throughput relative to the peer in the same run on ``rclone serve s3`` (peer median /
hook-processor median, higher is better). The rows come from ``python -m bench run``'s results;
the peak RSS of exec on 100,000 files comes from ``python -m bench scale``'s (``scaling``), when
one is given.
"""

from __future__ import annotations

from typing import Any

SERVER = "rclone"
LABEL = {"download": "stage-in", "upload": "publish", "roundtrip": "exec round trip"}
# (direction, data set, minimum ratio to s5cmd)
S5CMD = (
    ("roundtrip", "safe_like", 1.0),
    ("download", "safe_like", 1.0),
    ("upload", "safe_like", 1.0),
    ("download", "many_small", 0.8),
    ("upload", "many_small", 0.8),
    ("download", "one_big", 0.9),
    ("upload", "one_big", 0.9),
)
AWS_CLI = 1.5
RSS_MB = 120.0
RSS_FILES = 100_000
STARTUP_S = 0.3


def _engines(rounds: list[dict]) -> str:
    seen = sorted(
        {f"{x['engine']} ({x.get('engine_choice') or '?'})" for x in rounds if x.get("engine")}
    )
    return ", ".join(seen) if seen else "?"


def _row(target: str, want: str, measured: str, met: bool | None, engine: str) -> dict[str, Any]:
    verdict = "not measured" if met is None else ("met" if met else "missed")
    return {
        "target": target,
        "want": want,
        "measured": measured,
        "verdict": verdict,
        "engine": engine,
    }


def rows(results: dict, scaling: dict | None = None) -> list[dict[str, Any]]:
    """The target rows of one run (and of a scaling run for the 100,000-file RSS)."""
    ours = {
        (r["direction"], r["dataset"]): r
        for r in results["rows"]
        if r["server"] == SERVER and r["tool"] == "hook-processor"
    }
    out: list[dict[str, Any]] = []
    for direction, dataset, want in S5CMD:
        peer = "s5cmd down + up" if direction == "roundtrip" else "s5cmd"
        target = f"{LABEL[direction]} `{dataset}` vs {peer}"
        row = ours.get((direction, dataset))
        if row is None or row.get("ratio_s5cmd") is None:
            why = "failed" if row is not None else "not in this run"
            out.append(
                _row(target, f"≥ {want} ×", why, None, _engines(row["rounds"]) if row else "?")
            )
            continue
        ratio = row["ratio_s5cmd"]
        out.append(
            _row(
                target,
                f"≥ {want} ×",
                f"{ratio:.2f} × ({row['median_s']:.3f} s)",
                ratio >= want,
                _engines(row["rounds"]),
            )
        )

    per_direction = [r for k, r in ours.items() if k[0] != "roundtrip"]
    with_aws = [r for r in per_direction if r.get("ratio_aws_cli") is not None]
    if with_aws:
        worst = min(with_aws, key=lambda r: r["ratio_aws_cli"])
        below = [r for r in with_aws if r["ratio_aws_cli"] < AWS_CLI]
        measured = (
            f"lowest {worst['ratio_aws_cli']:.2f} × "
            f"({LABEL[worst['direction']]} {worst['dataset']})"
        )
        if below:
            measured += "; below: " + ", ".join(
                f"{LABEL[r['direction']]} {r['dataset']} {r['ratio_aws_cli']:.2f}" for r in below
            )
        met: bool | None = not below and len(with_aws) == len(per_direction)
        engines = _engines([x for r in with_aws for x in r["rounds"]])
    else:
        measured, met, engines = "no aws-cli rows in this run", None, "?"
    out.append(_row("every workload vs aws-cli", f"≥ {AWS_CLI} ×", measured, met, engines))

    execs = [r for k, r in ours.items() if k[0] == "roundtrip" and r.get("peak_rss_mb")]
    if execs:
        top = max(execs, key=lambda r: r["peak_rss_mb"])
        measured = (
            f"{top['peak_rss_mb']:.0f} MB (max, `{top['dataset']}`; "
            + ", ".join(f"{r['dataset']} {r['peak_rss_mb']:.0f}" for r in execs)
            + ")"
        )
        out.append(
            _row(
                "peak RSS of `exec`, any workload",
                f"≤ {RSS_MB:.0f} MB",
                measured,
                top["peak_rss_mb"] <= RSS_MB,
                _engines(top["rounds"]),
            )
        )
    else:
        out.append(
            _row(
                "peak RSS of `exec`, any workload",
                f"≤ {RSS_MB:.0f} MB",
                "no exec round trip in this run",
                None,
                "?",
            )
        )

    out.append(rss_at_files(scaling))

    starts = [s for s in results.get("startup", []) if s.get("server") == SERVER]
    target = "`exec` start → first S3 request"
    if starts and starts[0].get("median_s") is not None:
        med = starts[0]["median_s"]
        out.append(
            _row(
                target,
                f"≤ {STARTUP_S} s",
                f"{med:.3f} s",
                med <= STARTUP_S,
                _engines(starts[0]["rounds"]),
            )
        )
    else:
        out.append(_row(target, f"≤ {STARTUP_S} s", "not measured", None, "?"))
    return out


def rss_at_files(scaling: dict | None) -> dict[str, Any]:
    """Peak RSS of exec's round trip on the scaling run's 100,000 files of 4 KiB."""
    target = f"peak RSS of `exec` on {RSS_FILES:,} files of 4 KiB"
    step = next(
        (
            row
            for row in (scaling or {}).get("rows", [])
            if (row["kind"], row.get("nominal"), row["tool"], row["direction"])
            == ("files", RSS_FILES, "hook-processor", "roundtrip")
        ),
        None,
    )
    if step is None or step.get("peak_rss_mb") is None:
        where = "not in this run: `python -m bench scale`" if scaling is None else "not measured"
        return _row(target, f"≤ {RSS_MB:.0f} MB", where, None, "?")
    rss = step["peak_rss_mb"]
    measured = f"{rss:.0f} MB (exec round trip)"
    if step["count"] != RSS_FILES:
        measured += f" — at --scale {scaling['settings']['scale']:g}: {step['count']:,} files"
    return _row(target, f"≤ {RSS_MB:.0f} MB", measured, rss <= RSS_MB, _engines(step["rounds"]))


def table(results: dict, scaling: dict | None = None) -> str:
    """Markdown: target | target value | measured | met/missed | S3 engine."""
    lines = [
        "| target (issue 11, rclone serve s3) | wanted | measured | | S3 engine (choice) |",
        "|---|---|---|---|---|",
    ]
    for row in rows(results, scaling):
        lines.append(
            f"| {row['target']} | {row['want']} | {row['measured']} | **{row['verdict']}** | "
            f"{row['engine']} |"
        )
    return "\n".join(lines)
