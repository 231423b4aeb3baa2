"""The embedded S3 server: moto's server mode on 127.0.0.1 at a free port.

It speaks real HTTP, so the runtime, a subprocess and a container (on the host network) all talk
to the same endpoint. moto accepts any credentials; we hand out fixed, obviously-local ones.
Importing this module imports moto: keep it off the runtime's path (``hook-processor exec``).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any


@dataclasses.dataclass(frozen=True)
class S3Server:
    """A running S3 endpoint and the credentials to use with it."""

    endpoint_url: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"

    def client(self, **config_kwargs: Any) -> Any:
        """A boto3 S3 client for this server (for tests and the harness)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(**config_kwargs) if config_kwargs else None,
        )


class EmbeddedS3:
    """Start and stop moto's threaded server; usable as a context manager."""

    ACCESS_KEY = "hook-local-access"
    SECRET_KEY = "hook-local-secret"  # not a secret: moto accepts anything

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = host
        self._port = port
        self._server: Any = None
        self.started_in: float | None = None

    def start(self) -> S3Server:
        from moto.moto_server.threaded_moto_server import ThreadedMotoServer

        # werkzeug logs every request at INFO; a run's own log is what the user wants to see.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        began = time.perf_counter()
        self._server = ThreadedMotoServer(ip_address=self._host, port=self._port, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.started_in = time.perf_counter() - began
        shown = f"[{host}]" if ":" in host else host
        return S3Server(f"http://{shown}:{port}", self.ACCESS_KEY, self.SECRET_KEY)

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
