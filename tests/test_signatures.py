"""Our requests are correctly signed: checked by a server that verifies SigV4 (rclone serve s3).

moto accepts any signature, so the lean data path's hand-made SigV4 (``_s3/sigv4.py``) is proven
here against an independent implementation: odd keys, multipart, ranged and whole GETs, a
listing, and a wrong secret that must be refused.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from rclone_server import rclone_s3

from hook_processor.errors import StagingError
from hook_processor.storage import (
    S3Target,
    TransferSettings,
    make_client,
    publish_private,
    stage_in,
)

MiB = 1024 * 1024
ACCESS, SECRET = "sigv4-access", "sigv4-secret-0123456789"
SETTINGS = TransferSettings(concurrency=4, part_size=5 * MiB, multipart_threshold=6 * MiB)


@pytest.fixture(scope="module")
def verifying_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with rclone_s3(tmp_path_factory.mktemp("rclone-root"), ACCESS, SECRET) as endpoint:
        yield endpoint


def _client(endpoint: str, secret: str = SECRET, engine: str = "lean"):  # type: ignore[no-untyped-def]
    settings = dataclasses.replace(SETTINGS, engine=engine)
    return make_client(S3Target(endpoint, SecretStr(ACCESS), SecretStr(secret)), settings)


@pytest.mark.parametrize("engine", ["lean", "obstore"])
def test_lean_path_signatures_are_accepted_by_a_verifying_server(
    verifying_s3: str, tmp_path: Path, engine: str
) -> None:
    """The hand-signed requests (lean, and obstore's helper) and object_store's own signatures;
    on rclone, whose ranged GETs answer 200, obstore's ranged GETs go to its helper."""
    client = _client(verifying_s3, engine=engine)
    assert client.name == engine  # the engine under test is the one used
    client.boto.create_bucket(Bucket=f"signed-{engine}")
    files = {
        "a b/x+y%z é.txt": b"odd key",
        "日本/データ.txt": "データ".encode(),
        "tilde~=&;,$@.txt": b"more",
        "big.bin": os.urandom(13 * MiB),  # multipart up, ranged GETs down
    }
    src = tmp_path / "src"
    for rel, body in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(body)

    publish_private(client, f"signed-{engine}", "run", src, SETTINGS, manifest_extra={})
    stats = stage_in(client, f"signed-{engine}", "run/", tmp_path / "dest", SETTINGS)

    assert stats.files == len(files) + 1  # and the manifest
    for rel, body in files.items():
        assert (tmp_path / "dest" / rel).read_bytes() == body, rel


def test_a_wrong_secret_is_refused_by_the_verifying_server(
    verifying_s3: str, tmp_path: Path
) -> None:
    _client(verifying_s3).boto.create_bucket(Bucket="refused")
    with pytest.raises(StagingError, match="SignatureDoesNotMatch") as caught:
        stage_in(
            _client(verifying_s3, secret="not-the-secret"), "refused", "x/", tmp_path, SETTINGS
        )
    assert "not-the-secret" not in str(caught.value)
