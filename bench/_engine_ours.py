"""The runtime's three request engines for ``python -m bench engines``: boto3's client, the lean
engine (``hook_processor/_s3/lean.py``) and obstore (``hook_processor/_s3/obstore_engine.py``),
each made by ``make_client`` with ``engine=``.

Requests go straight to the engine (``get_object`` / ``put_object`` with boto3's calling
convention); whole transfers go through the runtime's own code, ``storage.stage_in`` and
``storage.publish_private``, with the engine of the row. So these rows include what the
runtime does on top of moving bytes: for publication a sha256 (+ MD5, CRC32) pass over each file
and a ``_manifest.json`` PUT.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any


class RuntimeEngine:
    extra_keys = ("_manifest.json",)  # publish_private writes it beside the files

    def __init__(
        self,
        name: str,
        endpoint_url: str,
        bucket: str,
        settings: Any,
        access_key: str,
        secret_key: str,
        region: str,
    ) -> None:
        import dataclasses

        from pydantic import SecretStr

        from hook_processor import storage

        settings = dataclasses.replace(settings, engine=name)
        self.name, self.bucket, self.settings = name, bucket, settings
        target = storage.S3Target(
            endpoint_url, SecretStr(access_key), SecretStr(secret_key), region
        )
        self.client = storage.make_client(target, settings)
        self.api: Any = self.client
        # Threads for the request rows, as the runtime's pool: created once, outside the timing.
        self.pool = ThreadPoolExecutor(settings.concurrency)

    def get_all(self, keys: list[str], in_flight: int) -> None:
        def get(key: str) -> None:
            stream = self.api.get_object(Bucket=self.bucket, Key=key)["Body"]
            while stream.read(1024 * 1024):
                pass
            stream.close()

        self._each(get, keys, in_flight)

    def put_all(self, keys: list[str], body: bytes, in_flight: int) -> None:
        from hook_processor._s3.engine import Payload

        self._each(
            lambda key: self.api.put_object(Bucket=self.bucket, Key=key, Body=Payload(data=body)),
            keys,
            in_flight,
        )

    def _each(self, fn: Any, items: list[str], in_flight: int) -> None:
        if in_flight == 1:
            for item in items:
                fn(item)
        else:
            assert in_flight == self.settings.concurrency, in_flight
            list(self.pool.map(fn, items))

    def stage_in(self, prefix: str, dest: Path) -> None:
        from hook_processor import storage

        storage.stage_in(self.client, self.bucket, prefix + "/", dest, self.settings)

    def publish(self, src: Path, prefix: str) -> None:
        from hook_processor import storage

        storage.publish_private(
            self.client, self.bucket, prefix, src, self.settings, manifest_extra={}
        )

    def close(self) -> None:
        self.pool.shutdown()
