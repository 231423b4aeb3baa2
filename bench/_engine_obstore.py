"""obstore (Rust ``object_store``, PyPI ``obstore``) as a request engine for ``python -m bench
engines``, used the way obstore is meant to be used: its async API, at most ``concurrency``
operations in flight (an ``asyncio.Semaphore``, the runtime's bound), one event loop per call.

- GET: one streamed GET per object; above ``multipart_threshold`` ranged GETs of at least
  ``part_size`` (at most ``concurrency`` per object, as the runtime), written with ``pwrite`` —
  unless the server refuses ranges (``rclone serve s3`` answers a ranged GET with 200 and a
  Content-Range, which object_store rejects: "Received non-partial response"); probed once,
  then one streamed GET per object.
- PUT: ``put_async`` of the file's path (read by Rust), multipart above ``multipart_threshold``
  with ``part_size`` parts and obstore's own part concurrency (12 per file).
- obstore's defaults otherwise: SigV4 with a signed payload (sha256 of every body), its retry
  policy. The timeouts are raised so that a 1 GiB body on a loaded 2-core machine is not cut.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench._adapters import landing, outputs

CHUNK = 1024 * 1024  # as the runtime: bytes per write


class ObstoreEngine:
    name = "obstore-async"
    extra_keys: tuple[str, ...] = ()

    def __init__(
        self,
        endpoint_url: str,
        bucket: str,
        settings: Any,
        access_key: str,
        secret_key: str,
        region: str,
    ) -> None:
        import obstore
        from obstore.store import S3Store

        self.obs = obstore
        self.settings = settings
        self.store = S3Store(
            bucket,
            endpoint=endpoint_url,
            access_key_id=access_key,
            secret_access_key=secret_key,
            region=region,
            virtual_hosted_style_request=False,
            client_options={
                "allow_http": endpoint_url.startswith("http://"),
                "timeout": "600s",
                "connect_timeout": "10s",
            },
        )
        self.ranged: bool | None = None  # does the server answer ranged GETs with 206?

    # --- requests ---------------------------------------------------------------------------

    def get_all(self, keys: list[str], in_flight: int) -> None:
        if in_flight == 1:
            for key in keys:
                self.obs.get(self.store, key).bytes()
            return

        async def one(key: str) -> None:
            result = await self.obs.get_async(self.store, key)
            await result.bytes_async()

        asyncio.run(self._bounded([functools.partial(one, k) for k in keys], in_flight))

    def put_all(self, keys: list[str], body: bytes, in_flight: int) -> None:
        if in_flight == 1:
            for key in keys:
                self.obs.put(self.store, key, body)
            return
        asyncio.run(
            self._bounded(
                [functools.partial(self.obs.put_async, self.store, k, body) for k in keys],
                in_flight,
            )
        )

    @staticmethod
    async def _bounded(jobs: list[Callable[[], Awaitable[Any]]], in_flight: int) -> None:
        gate = asyncio.Semaphore(in_flight)

        async def run(job: Callable[[], Awaitable[Any]]) -> None:
            async with gate:
                await job()

        await asyncio.gather(*(run(job) for job in jobs))

    # --- whole transfers --------------------------------------------------------------------

    def stage_in(self, prefix: str, dest: Path) -> None:
        listing = [
            (meta["path"], int(meta["size"]))
            for batch in self.obs.list(self.store, prefix=prefix + "/", chunk_size=1000)
            for meta in batch
        ]
        jobs: list[Callable[[], Awaitable[Any]]] = []
        made: set[Path] = set()
        fds: list[int] = []  # of the ranged files, closed when every part is in
        s = self.settings
        big = [key for key, size in listing if size > s.multipart_threshold]
        if big and self.ranged is None:
            self.ranged = self._probe_ranges(big[0])
        try:
            for key, size in listing:
                target = landing(dest, prefix, key, made)
                part = max(s.part_size, -(-size // s.concurrency))
                if self.ranged and size > s.multipart_threshold and size > part:
                    fds.append(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))
                    for offset in range(0, size, part):
                        end = min(size, offset + part)
                        jobs.append(functools.partial(self._part, key, offset, end, fds[-1]))
                else:
                    jobs.append(functools.partial(self._whole, key, target))
            asyncio.run(self._bounded(jobs, s.concurrency))
        finally:
            for fd in fds:
                os.close(fd)

    def _probe_ranges(self, key: str) -> bool:
        try:
            self.obs.get_range(self.store, key, start=0, length=1)
        except Exception as err:  # noqa: BLE001 - obstore's GenericError, by its text
            if "non-partial" in str(err):
                return False
            raise
        return True

    async def _whole(self, key: str, target: Path) -> None:
        result = await self.obs.get_async(self.store, key)
        with open(target, "wb") as fh:
            async for chunk in result.stream(min_chunk_size=CHUNK):
                fh.write(chunk)

    async def _part(self, key: str, start: int, end: int, fd: int) -> None:
        result = await self.obs.get_async(self.store, key, options={"range": (start, end)})
        at = start
        async for chunk in result.stream(min_chunk_size=CHUNK):
            os.pwrite(fd, chunk, at)
            at += len(chunk)
        if at != end:
            raise RuntimeError(f"{key}: range {start}-{end} gave {at - start} bytes")

    def publish(self, src: Path, prefix: str) -> None:
        s = self.settings
        jobs: list[Callable[[], Awaitable[Any]]] = []
        for path, key in outputs(src, prefix):
            jobs.append(
                functools.partial(
                    self.obs.put_async,
                    self.store,
                    key,
                    path,
                    use_multipart=path.stat().st_size > s.multipart_threshold,
                    chunk_size=s.part_size,
                )
            )
        asyncio.run(self._bounded(jobs, s.concurrency))

    def close(self) -> None:
        pass
