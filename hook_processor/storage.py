"""S3 transfers of the runtime: parallel stage-in, publication (PRIVATE / TEMPORARY), safe paths.

INTERFACE STUB: the implementation is being written; the signatures below are the contract the
runtime codes against.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import SecretStr

MANIFEST_NAME = "_manifest.json"
DOWNLOAD_LINK_SECONDS = 14 * 24 * 3600

Progress = Callable[[int], None]  # called with a number of bytes just transferred


@dataclasses.dataclass(frozen=True)
class S3Target:
    """Where and how to reach one S3 store."""

    endpoint_url: str | None
    access_key: SecretStr | None
    secret_key: SecretStr | None
    region: str | None = None


@dataclasses.dataclass(frozen=True)
class TransferSettings:
    concurrency: int = 16
    part_size: int = 8 * 1024 * 1024
    multipart_threshold: int = 16 * 1024 * 1024
    max_attempts: int = 5
    checksum: str = "when_supported"  # or "when_required"
    connect_timeout: float = 10.0
    read_timeout: float = 60.0


@dataclasses.dataclass
class TransferStats:
    files: int = 0
    bytes: int = 0
    retries: int = 0


@dataclasses.dataclass(frozen=True)
class Product:
    name: str
    size: int
    location: str | None = None  # s3://bucket/key (PRIVATE)
    download_link: str | None = None  # presigned URL (TEMPORARY)
    sha256: str | None = None


@dataclasses.dataclass
class PublishOutcome:
    products: list[Product]
    stats: TransferStats
    manifest: str | None = None  # s3:// URL of the manifest (PRIVATE)


def parse_s3_url(url: str, *, option: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key); raises OptionsError naming ``option``."""
    raise NotImplementedError


def make_client(target: S3Target, settings: TransferSettings) -> Any:
    raise NotImplementedError


def stage_in(
    client: Any,
    bucket: str,
    key_or_prefix: str,
    dest: Path,
    settings: TransferSettings,
    *,
    cancel: threading.Event | None = None,
    progress: Progress | None = None,
) -> TransferStats:
    raise NotImplementedError


def publish_private(
    client: Any,
    bucket: str,
    prefix: str,
    src: Path,
    settings: TransferSettings,
    *,
    manifest_extra: Mapping[str, Any],
    cancel: threading.Event | None = None,
    progress: Progress | None = None,
) -> PublishOutcome:
    raise NotImplementedError


def publish_temporary(
    client: Any,
    bucket: str,
    key: str,
    src: Path,
    settings: TransferSettings,
    *,
    expires_in: int = DOWNLOAD_LINK_SECONDS,
    cancel: threading.Event | None = None,
    progress: Progress | None = None,
) -> PublishOutcome:
    raise NotImplementedError
