"""The whole round trip: one real `hook-processor exec` against s5cmd cp down, then up.

hook-processor: ``hook-processor exec --project bench/passthrough_processor`` (options from the
environment, as a platform sets them): stage-in of ``s3://bench/src/<data set>/``, process() hard
links every input file into output_dir, publish PRIVATE to ``s3://bench/<prefix>/`` with its
``_manifest.json``; one process, timed from spawn to exit, peak RSS of that process.

s5cmd: ``s5cmd cp 's3://bench/src/<data set>/*' DIR/`` then ``s5cmd cp 'DIR/*' 's3://bench/<prefix>/'``
of the folder it just downloaded; the time is the sum of the two processes', the RSS the larger.

Both are checked outside the timing: the published keys against the data set (names, sizes,
ETag = md5 of single-part objects), and for exec its result.json (``Status``) too.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from bench import tools
from bench.servers import ACCESS_KEY, SECRET_KEY
from bench.startup import exec_command

PROJECT = Path(__file__).resolve().parent / "passthrough_processor"
ROUNDTRIP = "roundtrip"
TOOLS = ("hook-processor", "s5cmd")  # aws-cli is not timed here (ours): its rows are per direction


def run_exec(
    env: dict[str, str],
    endpoint: str,
    bucket: str,
    src_prefix: str,
    out_prefix: str,
    run_dir: Path,
    timeout: float,
) -> tuple[tools.Measured, dict[str, Any]]:
    """One exec round trip; (measurement, facts: engine, result status, timings)."""
    argv, how = exec_command()
    if argv is None:
        raise SystemExit(f"hook-processor exec cannot be run: {how}")
    run_dir.mkdir(parents=True)
    m = tools.run_measured(
        [*argv, "--project", str(PROJECT)],
        tools.exec_env(
            env, endpoint, bucket, src_prefix, out_prefix, run_dir, ACCESS_KEY, SECRET_KEY
        ),
        timeout=timeout,
    )
    engine, choice = tools.engine_of(m.stderr)
    facts: dict[str, Any] = {"engine": engine, "engine_choice": choice}
    result_path = run_dir / "result.json"
    if result_path.exists():
        result = json.loads(result_path.read_text())
        facts["status"] = result.get("Status")
        facts["timings"] = result.get("Timings")
        facts["output_files"] = (result.get("Output") or {}).get("Files")
    shutil.rmtree(run_dir, ignore_errors=True)
    return m, facts


def run_s5cmd(
    env: dict[str, str],
    endpoint: str,
    bucket: str,
    src_prefix: str,
    out_prefix: str,
    local: Path,
    timeout: float,
) -> tuple[tools.Measured, dict[str, Any]]:
    """s5cmd cp down into ``local`` (made empty first), then up from it; times summed."""
    shutil.rmtree(local, ignore_errors=True)
    local.mkdir(parents=True)
    down = tools.run_measured(
        tools.command("s5cmd", "download", endpoint, bucket, src_prefix, local), env, timeout
    )
    facts: dict[str, Any] = {"download_s": round(down.seconds, 4)}
    if down.returncode != 0:
        return down, facts
    up = tools.run_measured(
        tools.command("s5cmd", "upload", endpoint, bucket, out_prefix, local), env, timeout
    )
    facts["upload_s"] = round(up.seconds, 4)
    both = tools.Measured(
        down.seconds + up.seconds,
        up.returncode,
        max(down.max_rss_mb, up.max_rss_mb),
        up.stdout,
        down.stderr + up.stderr,
        down.cpu_user_s + up.cpu_user_s,
        down.cpu_sys_s + up.cpu_sys_s,
    )
    return both, facts


def commands() -> dict[str, str]:
    """The round trip's command lines, for the results JSON."""
    argv, how = exec_command()
    shown = tools.display([*(argv or ["hook-processor", "exec"]), "--project", str(PROJECT)])
    down = tools.command("s5cmd", "download", "{endpoint}", "bench", "{src}", Path("{dir}"))
    up = tools.command("s5cmd", "upload", "{endpoint}", "bench", "{prefix}", Path("{dir}"))
    return {
        "hook-processor": shown + "  # options from the environment: INPUT_S3_*, "
        "OUTPUT_STORAGE=PRIVATE, S3_*; process() hard-links input to output",
        "s5cmd": f"{tools.display(down)} && {tools.display(up)}",
    }
