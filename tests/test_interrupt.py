"""Interrupts are cancellations (issue 10, item 14), with real ``hook-processor run`` processes.

SIGINT (Ctrl-C) or SIGTERM while ``run`` uploads its inputs, or while the processor runs in any
mode: exit 6, one line naming the real signal (never click's bare ``Aborted!``), the signal
forwarded as itself to the mode's child, nothing left running, no multipart upload left open.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fault_proxy import FaultProxy, Rule

from hook_processor.s3server import S3Server

HELLO_WORLD = Path(__file__).resolve().parent.parent / "examples" / "hello_world"
BIG = 128 * 1024 * 1024  # a multipart upload that lasts a few seconds on this machine
WAIT = 90  # seconds: an upper bound for a step, never a measured time

SLEEPER = """
import os
import sys
import time


def process(input_dir, output_dir):
    (output_dir / "partial.txt").write_text("started")
    print(f"HOOK-TEST started pid={os.getpid()}", file=sys.stderr, flush=True)
    time.sleep(300)
"""


class Run:
    """``python -m hook_processor run ...`` in the background, its stderr read as it comes."""

    def __init__(self, *args: str, cwd: Path) -> None:
        self.child = subprocess.Popen(
            [sys.executable, "-m", "hook_processor", "run", *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "AWS_EC2_METADATA_DISABLED": "true"},
        )
        self.lines: list[str] = []
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.child.stderr is not None
        for line in self.child.stderr:
            with self.changed:
                self.lines.append(line)
                self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    def wait_for(self, pattern: str) -> re.Match[str]:
        deadline = time.monotonic() + WAIT
        with self.changed:
            while True:
                for line in self.lines:
                    if found := re.search(pattern, line):
                        return found
                if self.child.poll() is not None and not self.reader.is_alive():
                    raise AssertionError(f"ended before {pattern!r}:\n{''.join(self.lines)}")
                if time.monotonic() > deadline:
                    raise AssertionError(f"no {pattern!r} in time:\n{''.join(self.lines)}")
                self.changed.wait(0.2)

    def finish(self) -> tuple[int, str, str]:
        assert self.child.stdout is not None
        try:
            out = self.child.stdout.read()  # until the run closes it: when it ends
            self.child.wait(timeout=WAIT)
        finally:
            if self.child.poll() is None:
                self.child.kill()
                self.child.wait()
        self.reader.join(WAIT)
        self.child.stdout.close()
        assert self.child.stderr is not None
        self.child.stderr.close()
        return self.child.returncode, out, "".join(self.lines)


def wait_for_multipart(server: S3Server, bucket: str, run: Run) -> None:
    """Until the upload of the big input has begun (a multipart upload is open)."""
    client = server.client()
    deadline = time.monotonic() + WAIT
    while True:
        try:
            if client.list_multipart_uploads(Bucket=bucket).get("Uploads"):
                return
        except client.exceptions.NoSuchBucket:
            pass  # not created yet
        assert run.child.poll() is None, "".join(run.lines)
        assert time.monotonic() < deadline, "the upload never began"
        time.sleep(0.05)


def big_input(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "small.txt").write_text("small\n")
    with (folder / "big.bin").open("wb") as handle:
        handle.truncate(BIG)  # sparse: no disk traffic, all zeros
    return folder


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


@pytest.fixture
def slow_parts(s3_server: S3Server) -> Iterator[FaultProxy]:
    """The session's S3 behind a proxy that holds every part 2 s before reading it: from the
    first part held, the 16 parts (10 at a time) cannot all arrive within 4 s."""
    rule = Rule(fault="latency", delay=2.0, methods={"PUT"}, query={"partNumber", "uploadId"})
    # timeout: the parts cut short by the stop leave upstream reads waiting; bounded here.
    with FaultProxy(upstream=s3_server.endpoint_url, rules=[rule], timeout=10) as proxy:
        yield proxy


def wait_for_a_held_part(proxy: FaultProxy, run: Run) -> None:
    deadline = time.monotonic() + WAIT
    while not proxy.events:
        assert run.child.poll() is None, "".join(run.lines)
        assert time.monotonic() < deadline, "no part was ever sent"
        time.sleep(0.01)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_while_uploading_to_your_s3_aborts_the_upload_exit_6(
    tmp_path, s3_server: S3Server, s3, bucket: str, slow_parts: FaultProxy, signum: signal.Signals
) -> None:
    run = Run(
        str(HELLO_WORLD),
        "--input",
        str(big_input(tmp_path)),
        "--output",
        str(tmp_path / "out"),
        "--s3-endpoint",
        slow_parts.endpoint_url,
        "--s3-access-key",
        s3_server.access_key,
        "--s3-secret-key",
        s3_server.secret_key,
        "-o",
        f"input_s3_path=s3://{bucket}/in/",
        "-o",
        f"s3_bucket={bucket}",
        cwd=tmp_path,
    )
    wait_for_a_held_part(slow_parts, run)
    run.child.send_signal(signum)
    code, out, err = run.finish()

    assert code == 6, err
    assert f"hook-processor run: cancelled ({signum.name}) while uploading the inputs" in err
    assert "Aborted!" not in err and "Traceback" not in err
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads") is None  # aborted
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert "in/big.bin" not in keys
    assert "dedl_hello_world" not in out  # the processor never ran


def test_ctrl_c_while_uploading_to_the_embedded_s3_exit_6(tmp_path) -> None:
    run = Run(
        str(HELLO_WORLD),
        "--input",
        str(big_input(tmp_path)),
        "--output",
        str(tmp_path / "out"),
        cwd=tmp_path,
    )
    endpoint = run.wait_for(r"embedded S3 server at (\S+)").group(1)
    wait_for_multipart(
        S3Server(endpoint, "hook-local-access", "hook-local-secret"), "hook-input", run
    )
    run.child.send_signal(signal.SIGINT)
    code, out, err = run.finish()

    assert code == 6, err
    # Mostly "while uploading the inputs"; on a loaded machine the upload to the child's own
    # server may end first (then the run is cancelled a step later): the deterministic case is
    # the test above, with a proxy holding the parts.
    assert re.search(r"^hook-processor run: cancelled \(SIGINT", out + err, re.MULTILINE), err
    assert "Aborted!" not in err and "Traceback" not in err


def sleeper_project(tmp_path: Path) -> Path:
    project = tmp_path / "sleeper"
    project.mkdir()
    (project / "sleeper_proc.py").write_text(SLEEPER)
    (project / "pyproject.toml").write_text(
        '[tool.hook-processor]\nname = "sleeper"\nentrypoint = "sleeper_proc:process"\n'
    )
    return project


@pytest.mark.parametrize("mode", ["inprocess", "subprocess"])
def test_ctrl_c_while_process_runs_is_forwarded_as_sigint_exit_6(tmp_path, mode: str) -> None:
    (tmp_path / "in.txt").write_text("x")
    run = Run(
        str(sleeper_project(tmp_path)),
        "--input",
        str(tmp_path / "in.txt"),
        "--output",
        str(tmp_path / "out"),
        "--mode",
        mode,
        cwd=tmp_path,
    )
    pid = int(run.wait_for(r"HOOK-TEST started pid=(\d+)").group(1))
    assert (pid == run.child.pid) == (mode == "inprocess")
    run.child.send_signal(signal.SIGINT)
    code, out, err = run.finish()

    assert code == 6, err
    assert out.startswith("hook-processor run: cancelled (SIGINT"), out
    assert "cancelled by SIGINT during process()" in err
    assert "SIGTERM" not in out + err
    assert "Aborted!" not in err and "Traceback" not in err
    assert not alive(pid)
    assert (tmp_path / "out" / "partial.txt").read_text() == "started"  # kept, not published
