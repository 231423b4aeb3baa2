"""The embedded S3 server: moto's server mode on 127.0.0.1 at a free port.

It speaks real HTTP, so the runtime, a subprocess and a container (on the host network) all talk
to the same endpoint. moto accepts any credentials; we hand out fixed, obviously-local ones.
Importing this module imports moto: keep it off the runtime's path (``hook-processor exec``).

With a ``state_dir``, the objects outlive the process (:mod:`hook_processor.s3state`): they are
put back at :meth:`EmbeddedS3.start`, mirrored every few seconds and at :meth:`EmbeddedS3.persist`,
and once more at :meth:`EmbeddedS3.stop`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hook_processor.s3state import Snapshot

logger = logging.getLogger("hook_processor.s3server")

# Seconds between two background syncs of a ``state_dir`` (what a crash can lose, at most,
# of what was written straight to the store; see hook_processor.s3state).
SYNC_INTERVAL = 2.0


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

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, state_dir: Path | None = None
    ) -> None:
        self._host = host
        self._port = port
        self._server: Any = None
        self._state_dir = state_dir
        self._snapshot: Snapshot | None = None
        self.started_in: float | None = None
        self.restored: tuple[int, int] = (0, 0)  # objects and bytes put back from state_dir

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
        server = S3Server(f"http://{shown}:{port}", self.ACCESS_KEY, self.SECRET_KEY)
        if self._state_dir is not None:
            self._resume(server, self._state_dir)
        return server

    def _resume(self, server: S3Server, state_dir: Path) -> None:
        from hook_processor.s3state import Snapshot

        try:
            snapshot = Snapshot(server, state_dir)
            self.restored = snapshot.restore()
        except BaseException:
            self._server.stop()
            self._server = None
            raise
        if self.restored[0]:
            logger.info(
                "embedded S3: %d objects (%d bytes) restored from %s", *self.restored, state_dir
            )
        snapshot.start_background(SYNC_INTERVAL)
        self._snapshot = snapshot

    def persist(self) -> None:
        """Mirror the objects to ``state_dir`` now (nothing without one)."""
        if self._snapshot is not None:
            self._snapshot.sync()

    def wake(self) -> None:
        """Ask for a background sync soon (does not wait for it)."""
        if self._snapshot is not None:
            self._snapshot.wake()

    def stop(self) -> None:
        try:
            if self._snapshot is not None:
                snapshot, self._snapshot = self._snapshot, None
                try:
                    snapshot.close()  # the last sync, while the server still answers
                except Exception as exc:  # the mirror keeps the last sync that completed
                    logger.warning(
                        "embedded S3 mirror: the last sync at the stop failed (%s); the mirror "
                        "holds the objects of the sync before it",
                        exc,
                    )
        finally:
            if self._server is not None:
                self._server.stop()
                self._server = None

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
