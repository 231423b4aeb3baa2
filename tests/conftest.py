"""Shared fixtures: a real moto S3 server on 127.0.0.1 and a clean environment."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hook_processor.options import StandardOptions, option_aliases
from hook_processor.s3server import S3Server

REPO_ROOT = Path(__file__).resolve().parent.parent
HELLO_WORLD = REPO_ROOT / "examples" / "hello_world"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the developer's own credentials and Hook settings out of every test."""
    for name in list(os.environ):
        upper = name.upper()
        if upper.startswith(("AWS_", "HOOK_")) or upper in _OPTION_NAMES:
            monkeypatch.delenv(name, raising=False)
    # botocore probes the EC2 metadata service when it finds no credentials: never here.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


_OPTION_NAMES = {
    alias.upper()
    for name in StandardOptions.model_fields
    for alias in option_aliases(StandardOptions, name)
}


@pytest.fixture(scope="session")
def s3_server(hook_s3_server: S3Server) -> S3Server:
    """One moto server (real HTTP on 127.0.0.1) for the whole session: the pytest plugin's."""
    return hook_s3_server


@pytest.fixture
def s3(s3_server: S3Server):  # type: ignore[no-untyped-def]
    """A boto3 client for the session's S3 server."""
    return s3_server.client()


@pytest.fixture
def bucket(s3) -> str:  # type: ignore[no-untyped-def]
    """A fresh, empty bucket with a unique name."""
    name = f"t-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def private_exec_env(s3_server: S3Server, bucket: str, tmp_path: Path) -> dict[str, str]:
    """The environment of an ``exec`` run from ``s3://<bucket>/in/`` to ``s3://<bucket>/out``
    (PRIVATE) on the session's S3 server, with its work dir in ``tmp_path / "work"``."""
    return {
        "INPUT_S3_ENDPOINT_URL": s3_server.endpoint_url,
        "INPUT_S3_PATH": f"s3://{bucket}/in/",
        "INPUT_S3_ACCESS_KEY": s3_server.access_key,
        "INPUT_S3_SECRET_KEY": s3_server.secret_key,
        "S3_BUCKET": bucket,
        "S3_PREFIX": "out",
        "S3_ACCESS_KEY": s3_server.access_key,
        "S3_SECRET_KEY": s3_server.secret_key,
        "HOOK_WORK_DIR": str(tmp_path / "work"),
    }


@pytest.fixture
def traced() -> Iterator[None]:
    """tracemalloc on for the test (the memory bounds: tests/memory_helpers.py)."""
    import tracemalloc

    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()
