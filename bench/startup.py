"""`hook-processor exec` start -> first S3 request, seen by a recording TCP proxy.

The proxy sits between exec and the S3 server; the time origin is taken just before spawning exec
and the end is the first byte any client connection sends to the proxy, both with
``time.perf_counter`` in this process. The proxy only forwards bytes; it does not parse HTTP.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.servers import ACCESS_KEY, REGION, SECRET_KEY
from bench.tools import REPO_ROOT, display, engine_of, exec_env, find_exe, tool_env

PROJECT = Path(__file__).resolve().parent / "startup_processor"


class RecordingProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.first_byte_at: float | None = None
        self.connections = 0
        self._lock = threading.Lock()
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def reset(self) -> None:
        with self._lock:
            self.first_byte_at = None
            self.connections = 0

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.upstream)
        except OSError:
            client.close()
            return
        threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()
        self._pipe(client, upstream, True)

    def _pipe(self, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        try:
            while data := src.recv(65536):
                if from_client and self.first_byte_at is None:
                    now = time.perf_counter()
                    with self._lock:
                        if self.first_byte_at is None:
                            self.first_byte_at = now
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            src.close()

    def close(self) -> None:
        self._stop = True
        self.listener.close()


def exec_command() -> tuple[list[str] | None, str]:
    """argv prefix for `hook-processor exec`, or None and why it is not measurable yet."""
    script = find_exe("hook-processor")
    if script:
        return [script, "exec"], "console script"
    if (REPO_ROOT / "hook_processor" / "cli.py").exists():
        return [
            sys.executable,
            "-m",
            "hook_processor",
            "exec",
        ], "python -m (console script not installed)"
    return None, "hook_processor.cli does not exist yet"


def measure(server, rounds: int, log=print) -> dict:  # noqa: ANN001
    """Median over ``rounds`` of exec start -> first request; 'n/a' when exec is not there."""
    argv, how = exec_command()
    result: dict = {"server": server.kind, "how": how, "rounds": [], "median_s": None}
    if argv is None:
        log(f"  exec start -> first S3 request: n/a ({how})")
        result["note"] = f"n/a: {how}"
        return result
    argv = [*argv, "--project", str(PROJECT)]
    result["command"] = (
        display(argv) + "  # options from the environment: INPUT_S3_*, OUTPUT_STORAGE=PRIVATE, S3_*"
    )
    s3 = server.client()
    bucket = "bench-startup"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="input/example.data", Body=b"hello, bench\n")
    proxy = RecordingProxy(server.port)
    work = Path(tempfile.mkdtemp(prefix="bench-exec-"))
    try:
        for r in range(rounds):
            endpoint = f"http://127.0.0.1:{proxy.port}"
            env = tool_env(endpoint, ACCESS_KEY, SECRET_KEY, REGION)
            run_dir = work / f"r{r}"
            run_dir.mkdir()
            env = exec_env(
                env, endpoint, bucket, "input", f"output/r{r}", run_dir, ACCESS_KEY, SECRET_KEY
            )
            proxy.reset()
            began = time.perf_counter()
            done = subprocess.run(
                argv, env=env, cwd=run_dir, capture_output=True, text=True, timeout=120
            )
            ended = time.perf_counter()
            first = proxy.first_byte_at
            row: dict[str, Any] = {
                "round": r,
                "first_request_s": None if first is None else round(first - began, 4),
                "total_s": round(ended - began, 4),
                "exit_code": done.returncode,
            }
            row["engine"], row["engine_choice"] = engine_of(done.stderr)
            if done.returncode != 0:
                row["stderr_tail"] = done.stderr[-800:]
            result["rounds"].append(row)
        firsts = sorted(
            x["first_request_s"] for x in result["rounds"] if x["first_request_s"] is not None
        )
        if firsts:
            result["median_s"] = round(statistics.median(firsts), 4)
        codes = {x["exit_code"] for x in result["rounds"]}
        if codes != {0}:
            result["note"] = f"exec exit codes {sorted(codes)}"
        shown = "n/a" if result["median_s"] is None else f"{result['median_s']:.3f} s"
        log(f"  exec start -> first S3 request: {shown} (exit codes {sorted(codes)})")
    finally:
        proxy.close()
        shutil.rmtree(work, ignore_errors=True)
    return result
