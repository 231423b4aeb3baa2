"""python -m bench run [...] | report RESULTS.json [--markdown BENCHMARKS.md] | engines [...]
| serve [...] | scaleout [...]"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

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
    run.add_argument("--timeout", type=float, default=1800.0, help="seconds per tool run")

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

    rep = sub.add_parser("report", help="write/update the results table in BENCHMARKS.md")
    rep.add_argument("results", type=Path)
    rep.add_argument("--markdown", type=Path, default=REPO_ROOT / "BENCHMARKS.md")

    args = parser.parse_args(argv)
    if args.cmd == "run":
        if args.rounds < 1:
            parser.error("--rounds must be >= 1")
        if not 0 < args.scale <= 1:
            parser.error("--scale must be in (0, 1]")
        if args.startup_rounds is None:
            args.startup_rounds = args.rounds
        from bench.runner import run as do_run

        print(do_run(args))
        return 0
    if args.cmd == "engines":
        if args.rounds < 1 or args.objects < 1:
            parser.error("--rounds and --objects must be >= 1")
        if not 0 < args.scale <= 1:
            parser.error("--scale must be in (0, 1]")
        from bench.engines import run as run_engines

        run_engines(args)
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

    print(update(args.results, args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
