"""Test support: a real Dask cluster on 127.0.0.1, started as a user starts one (``dask
scheduler``, ``dask worker``, as ``python -m distributed.cli...`` of this interpreter, so the
workers import this checkout's hook_processor), each process's log kept in a file."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class DaskCluster:
    """A scheduler and ``workers`` worker processes (no nanny: one process is one worker, and
    killing it kills that worker)."""

    def __init__(self, log_dir: Path, env: Mapping[str, str], *, threads: int = 1) -> None:
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        self.env = dict(env)
        self.threads = threads
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.scheduler: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self._logs: list[Path] = []

    def _start(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = self.log_dir / f"{name}-{time.time_ns()}.log"
        self._logs.append(log)
        with log.open("wb") as out:
            return subprocess.Popen(
                [sys.executable, "-m", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.log_dir,
                start_new_session=True,
            )

    def start_scheduler(self) -> None:
        self.scheduler = self._start(
            "scheduler",
            [
                "distributed.cli.dask_scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dashboard-address",
                f"127.0.0.1:{free_port()}",
                "--no-show",
            ],
        )

    def start_worker(self) -> subprocess.Popen[bytes]:
        worker = self._start(
            f"worker{len(self.workers)}",
            [
                "distributed.cli.dask_worker",
                self.address,
                "--host",
                "127.0.0.1",
                "--nthreads",
                str(self.threads),
                "--no-nanny",
                "--no-dashboard",
                "--local-directory",
                str(self.log_dir / f"worker{len(self.workers)}-space"),
            ],
        )
        self.workers.append(worker)
        return worker

    def client(self) -> Any:
        from distributed import Client

        return Client(self.address, timeout=30, set_as_default=False)

    def wait_for_workers(self, count: int, timeout: float = 60.0) -> None:
        with contextlib.closing(self.client()) as client:
            client.wait_for_workers(count, timeout=timeout)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self._logs if p.exists())

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)

    def stop(self) -> None:
        for process in [*self.workers, *([self.scheduler] if self.scheduler else [])]:
            if process.poll() is None:
                self.kill(process)


@contextlib.contextmanager
def dask_cluster(
    log_dir: Path, env: Mapping[str, str], *, workers: int = 2, threads: int = 1
) -> Iterator[DaskCluster]:
    cluster = DaskCluster(log_dir, env, threads=threads)
    try:
        cluster.start_scheduler()
        for _ in range(workers):
            cluster.start_worker()
        cluster.wait_for_workers(workers)
        yield cluster
    finally:
        cluster.stop()
