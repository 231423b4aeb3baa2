"""python -m bench run [...] | scale [...] | report RESULTS.json [--scaling SCALE.json]
[--markdown BENCHMARKS.md] | engines [...] | serve [...] | scaleout [...] | profile [...]"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench import scaling as scaling_mod
from bench.datasets import NAMES
from bench.engines import ENGINES
from bench.servers import SERVERS
from bench.tools import REPO_ROOT, TOOLS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)

    run = sub.add_parser("run", help="run the benchmark and write a results JSON")
    run.add_argument("--rounds", type=int, default=3, help="rounds per tool (median; default 3)")
    run.add_argument(
        "--datasets", default=",".join(NAMES), help=f"comma list of {', '.join(NAMES)}"
    )
    run.add_argument(
        "--servers", default=",".join(SERVERS), help=f"comma list of {', '.join(SERVERS)}"
    )
    run.add_argument("--tools", default=",".join(TOOLS), help=f"comma list of {', '.join(TOOLS)}")
    run.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="shrink every data set (e.g. 0.01 for a quick check; 1.0 = full size)",
    )
    run.add_argument("--out", help="results JSON (default bench/results/<date>-<host-kind>.json)")
    run.add_argument(
        "--data-dir",
        default=str(REPO_ROOT / "bench" / "data"),
        help="where data sets are generated and kept (default bench/data)",
    )
    run.add_argument(
        "--work-dir",
        default=None,
        help="parent of the download folders and server storage (default: system temp)",
    )
    run.add_argument(
        "--startup-rounds",
        type=int,
        default=None,
        help="rounds of the exec start -> first request measurement (default --rounds; 0 = skip)",
    )
    run.add_argument(
        "--no-verify-content",
        dest="verify",
        action="store_false",
        help="check sizes only after downloads (default: md5 of every file)",
    )
    run.add_argument(
        "--no-roundtrip",
        dest="roundtrip",
        action="store_false",
        help="skip the whole exec round trip (hook-processor exec vs s5cmd down + up)",
    )
    run.add_argument("--timeout", type=float, default=1800.0, help="seconds per tool run")

    scl = sub.add_parser(
        "scale",
        help="stage-in, publish and exec at 1,000-100,000 files of 4 KiB and 0.25-4 GiB objects "
        "(bench/scaling.py)",
    )
    scl.add_argument("--rounds", type=int, default=3, help="rounds per step (median; default 3)")
    scl.add_argument(
        "--largest-rounds",
        type=int,
        default=None,
        help="rounds of the largest file count and of the largest object only (default "
        "--rounds; on 2 loaded cores 100,000 files take ~20 min a round, 4 GiB ~9 min)",
    )
    scl.add_argument("--scale", type=float, default=1.0, help="shrink counts and sizes (tests)")
    scl.add_argument(
        "--files",
        type=_ints,
        default=scaling_mod.FILE_COUNTS,
        help="file counts of 4 KiB files (default 1000,10000,100000)",
    )
    scl.add_argument(
        "--sizes-gib",
        type=_floats,
        default=scaling_mod.OBJECT_GIB,
        help="single-object sizes in GiB (default 0.25,1,4)",
    )
    scl.add_argument("--server", choices=SERVERS, default="rclone", help="default rclone")
    scl.add_argument(
        "--no-exec",
        dest="exec",
        action="store_false",
        help="skip the exec round trip of each step",
    )
    scl.add_argument("--out", help="results JSON (default bench/results/<date>-<host>-scale.json)")
    scl.add_argument(
        "--data-dir",
        default=str(REPO_ROOT / "bench" / "data"),
        help="data sets are generated into DIR/scaling once (default bench/data)",
    )
    scl.add_argument("--work-dir", default=None, help="server storage, downloads (default temp)")
    scl.add_argument(
        "--no-verify-content",
        dest="verify",
        action="store_false",
        help="check sizes only after downloads (default: md5 of every file)",
    )
    scl.add_argument("--timeout", type=float, default=3600.0, help="seconds per tool run")

    eng = sub.add_parser(
        "engines",
        help="the runtime's engines (boto3, lean, obstore), obstore-async and the CRT side by side "
        "(bench/engines.py)",
    )
    eng.add_argument("--objects", type=int, default=1000, help="objects per request row")
    eng.add_argument("--size", type=int, default=32 * 1024, help="bytes per object")
    eng.add_argument("--rounds", type=int, default=3, help="rounds (median; default 3)")
    eng.add_argument(
        "--servers", default=",".join(SERVERS), help=f"comma list of {', '.join(SERVERS)}"
    )
    eng.add_argument(
        "--engines", default=",".join(ENGINES), help=f"comma list of {', '.join(ENGINES)}"
    )
    eng.add_argument(
        "--datasets", default=",".join(NAMES), help=f"whole transfers of: {', '.join(NAMES)}"
    )
    eng.add_argument("--scale", type=float, default=1.0, help="shrink every data set, as run's")
    eng.add_argument(
        "--data-dir",
        default=str(REPO_ROOT / "bench" / "data"),
        help="where data sets are generated and kept (default bench/data)",
    )
    eng.add_argument("--work-dir", default=None, help="server storage (default: system temp)")
    eng.add_argument(
        "--verify-content",
        action="store_true",
        help="after stage-in check every file's md5 too (default: sizes)",
    )
    eng.add_argument("--out", help="results JSON (default: print only)")

    srv = sub.add_parser(
        "serve",
        help="hook-processor serve: orders/s, API p50/p99 under concurrent clients, and an "
        "order's overhead over a bare exec (bench/serve.py)",
    )
    srv.add_argument("--clients", type=int, default=50, help="concurrent clients (default 50)")
    srv.add_argument("--orders-per-client", type=int, default=4, help="POSTs each (default 4)")
    srv.add_argument("--requests-per-client", type=int, default=20, help="GETs each (default 20)")
    srv.add_argument("--rounds", type=int, default=3, help="order vs exec rounds (median)")
    srv.add_argument("--concurrency", type=int, default=2, help="serve --concurrency (default 2)")
    srv.add_argument("--work-dir", default=None, help="data dir and logs (default: a temp dir)")
    srv.add_argument("--out", help="results JSON (default: print only)")

    scl = sub.add_parser(
        "scaleout",
        help="one order of a CPU-bound processor: serve's local pool (concurrency 2) vs Dask "
        "(2 workers) (bench/scaleout.py)",
    )
    scl.add_argument(
        "--items", default="10,40", help="comma list of order sizes (default 10,40; add 160)"
    )
    scl.add_argument("--work", type=float, default=2.0, help="CPU seconds per item (default 2)")
    scl.add_argument("--configs", default="local,dask", help="comma list of local, dask")
    scl.add_argument("--work-dir", default=None, help="data dirs and logs (default: a temp dir)")
    scl.add_argument("--out", help="results JSON (default: print only)")

    prof = sub.add_parser(
        "profile",
        help="py-spy profile of one hook-processor transfer on rclone serve s3 (bench/profile.py)",
    )
    prof.add_argument("--dataset", choices=NAMES, default="safe_like")
    prof.add_argument(
        "--direction", choices=("download", "upload", "roundtrip"), default="download"
    )
    prof.add_argument("--scale", type=float, default=1.0, help="shrink the data set, as run's")
    prof.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    prof.add_argument("--top", type=int, default=15, help="functions listed (default 15)")
    prof.add_argument("--keep", type=Path, default=None, help="also save py-spy's raw output")
    prof.add_argument(
        "--data-dir",
        default=str(REPO_ROOT / "bench" / "data"),
        help="where data sets are generated and kept (default bench/data)",
    )
    prof.add_argument("--work-dir", default=None, help="server storage (default: system temp)")
    prof.add_argument("--timeout", type=float, default=1800.0, help="seconds for the run")

    rep = sub.add_parser("report", help="write/update the results table in BENCHMARKS.md")
    rep.add_argument("results", type=Path, help="a results JSON of run or of scale")
    rep.add_argument(
        "--scaling",
        type=Path,
        default=None,
        help="a scale results JSON: fills the target table's 100,000-file RSS row",
    )
    rep.add_argument(
        "--also",
        type=Path,
        action="append",
        default=[],
        help="another scale results JSON (repeatable): its steps replace the same steps of the "
        "first (a step rerun alone, e.g. --files 100000 --sizes-gib '')",
    )
    rep.add_argument("--markdown", type=Path, default=REPO_ROOT / "BENCHMARKS.md")

    args = parser.parse_args(argv)
    if args.cmd == "run":
        if args.rounds < 1:
            parser.error("--rounds must be >= 1")
        if not 0 < args.scale <= 1:
            parser.error("--scale must be in (0, 1]")
        if args.startup_rounds is None:
            args.startup_rounds = args.rounds
        from bench import targets
        from bench.runner import run as do_run

        out = do_run(args)
        print(targets.table(json.loads(out.read_text())))
        print(f"\nresults: {out}")
        return 0
    if args.cmd == "scale":
        if args.rounds < 1 or (args.largest_rounds is not None and args.largest_rounds < 1):
            parser.error("--rounds and --largest-rounds must be >= 1")
        if not 0 < args.scale <= 1:
            parser.error("--scale must be in (0, 1]")
        out = scaling_mod.run(args)
        print(scaling_mod.main_table(json.loads(out.read_text())))
        print(f"\nresults: {out}")
        return 0
    if args.cmd == "engines":
        if args.rounds < 1 or args.objects < 1:
            parser.error("--rounds and --objects must be >= 1")
        if not 0 < args.scale <= 1:
            parser.error("--scale must be in (0, 1]")
        from bench.engines import run as run_engines

        run_engines(args)
        return 0
    if args.cmd == "profile":
        if not 0 < args.scale <= 1:
            parser.error("--scale must be in (0, 1]")
        from bench import profile

        print(profile.render(profile.run(args)))
        return 0
    if args.cmd == "serve":
        if min(args.clients, args.orders_per_client, args.requests_per_client, args.rounds) < 1:
            parser.error("--clients, --orders-per-client, --requests-per-client, --rounds >= 1")
        from bench import serve

        print(serve.table(serve.run(args)))
        return 0
    if args.cmd == "scaleout":
        args.items = [int(n) for n in args.items.split(",")]
        args.configs = args.configs.split(",")
        if min(args.items) < 1 or not set(args.configs) <= {"local", "dask"}:
            parser.error("--items >= 1; --configs of local, dask")
        from bench import scaleout

        print(scaleout.table(scaleout.run(args)))
        return 0
    from bench.report import update

    if not args.results.is_file():
        parser.error(f"{args.results}: no such results file")
    if args.scaling is not None:
        if not args.scaling.is_file():
            parser.error(f"--scaling {args.scaling}: no such results file")
        if json.loads(args.scaling.read_text()).get("kind") != scaling_mod.KIND:
            parser.error(f"--scaling {args.scaling}: not a results file of `python -m bench scale`")
    for extra in args.also:
        if not extra.is_file() or json.loads(extra.read_text()).get("kind") != scaling_mod.KIND:
            parser.error(f"--also {extra}: not a results file of `python -m bench scale`")
    print(update(args.results, args.markdown, args.scaling, tuple(args.also)))
    return 0


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: want integers, e.g. 1000,10000") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: want integers >= 1")
    return values


def _floats(text: str) -> tuple[float, ...]:
    """Numbers > 0; an empty value is no object step (e.g. to run one file count alone)."""
    try:
        values = tuple(float(x) for x in text.split(",") if x)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: want numbers, e.g. 0.25,1,4") from None
    if values and min(values) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: want numbers > 0")
    return values


if __name__ == "__main__":
    sys.exit(main())
