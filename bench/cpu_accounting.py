"""Where the CPU of a transfer goes: the client's and the S3 server's, hook-processor vs s5cmd.

    python -m bench.cpu_accounting [--rounds 3] [--datasets safe_like,many_small,one_big] [--out F]

On a machine whose cores the S3 server shares with the client (the bench's 2 cores), a transfer
cannot take less wall time than (client CPU + server CPU) / cores. For each data set this starts
one `rclone serve s3` preloaded with it (bench/servers.py), and for each direction and tool runs
one transfer at a time (hook-processor: `python -m bench._ours`, the runtime's code; s5cmd: its
binary), taking the client's user + system CPU from `wait4` (its children included) and rclone's
from `/proc/PID/stat` before and after. Prints medians of the rounds; ``--out`` writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import datasets
from bench.servers import ACCESS_KEY, REGION, SECRET_KEY, Server
from bench.tools import REPO_ROOT, s5cmd_exe


def _server_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _command(tool: str, direction: str, endpoint: str, tree: Path, work: Path, r: int) -> list[str]:
    if tool == "s5cmd":
        s5 = s5cmd_exe() or "s5cmd"
        if direction == "download":
            return [s5, "--endpoint-url", endpoint, "cp", "s3://bench/src/*", f"{work}/"]
        return [s5, "--endpoint-url", endpoint, "cp", f"{tree}/*", f"s3://bench/s5-{r}/"]
    prefix = "src" if direction == "download" else f"hp-{r}"
    folder = work / "d" if direction == "download" else tree
    return [sys.executable, "-m", "bench._ours", direction, "--endpoint-url", endpoint,
            "--bucket", "bench", "--prefix", prefix, "--dir", str(folder)]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cpu_accounting")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--datasets", default=",".join(datasets.NAMES))
    parser.add_argument("--data-dir", type=Path, default=REPO_ROOT / "bench" / "data")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
    env["AWS_REGION"] = REGION
    env.pop("HOOK_DOWNLOAD_RANGES", None)
    results: dict[str, dict[str, float]] = {}
    print("| transfer | tool | wall s | client CPU s | rclone CPU s | (client + rclone) / 2 s |")
    print("|---|---|---:|---:|---:|---:|")
    for name in args.datasets.split(","):
        dataset = datasets.ensure(args.data_dir, name, log=lambda *_: None)
        with Server("rclone", preload=(dataset.root, "bench/src")) as server:
            assert server.proc is not None
            # rclone hashes a preloaded file at its first listing: not part of any transfer
            listing = [s5cmd_exe() or "s5cmd", "--endpoint-url", server.endpoint_url, "ls"]
            subprocess.run([*listing, "s3://bench/src/*"], env=env, capture_output=True)
            for direction in ("download", "upload"):
                for tool in ("hook-processor", "s5cmd"):
                    rows = []
                    for r in range(args.rounds):
                        work = Path(tempfile.mkdtemp(prefix="bench-cpu-"))
                        cmd = _command(tool, direction, server.endpoint_url, dataset.root, work, r)
                        before, began = _server_cpu(server.proc.pid), time.perf_counter()
                        child = subprocess.Popen(
                            cmd, env=env, cwd=REPO_ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                        )  # fmt: skip
                        _, status, usage = os.wait4(child.pid, 0)
                        wall = time.perf_counter() - began
                        served = _server_cpu(server.proc.pid) - before
                        shutil.rmtree(work, ignore_errors=True)
                        if status != 0:
                            raise SystemExit(f"{tool} {direction} {name} failed: {cmd}")
                        rows.append((wall, usage.ru_utime + usage.ru_stime, served))
                    wall, client, served = (statistics.median(x) for x in zip(*rows, strict=True))
                    what = f"{'stage-in' if direction == 'download' else 'publish'} {name}"
                    results[f"{what} {tool}"] = {
                        "wall_s": round(wall, 3),
                        "client_cpu_s": round(client, 3),
                        "server_cpu_s": round(served, 3),
                    }
                    print(
                        f"| {what} | {tool} | {wall:.2f} | {client:.2f} | {served:.2f} | "
                        f"{(client + served) / 2:.2f} |",
                        flush=True,
                    )
    if args.out:
        args.out.write_text(json.dumps({"rounds": args.rounds, "rows": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
