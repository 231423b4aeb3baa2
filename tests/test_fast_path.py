"""The lean data path (hook_processor/_fast.py): when it is taken, and that it round-trips.

test_storage.py hooks botocore events in most tests, which sends those through boto3; the
runtime and reliability tests (no hooks) run through the lean path. Here: the choice itself,
and a round trip through the lean path of odd keys, empty, multipart and ranged objects.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from hook_processor import _fast
from hook_processor.errors import StagingError
from hook_processor.storage import (
    S3Target,
    TransferSettings,
    make_client,
    publish_private,
    stage_in,
)

MiB = 1024 * 1024
SMALL_PARTS = TransferSettings(concurrency=4, part_size=5 * MiB, multipart_threshold=6 * MiB)


def _make(s3_server: Any, settings: TransferSettings = SMALL_PARTS) -> Any:
    target = S3Target(
        s3_server.endpoint_url, SecretStr(s3_server.access_key), SecretStr(s3_server.secret_key)
    )
    return make_client(target, settings)


def test_make_client_clients_take_the_lean_path_until_an_event_is_hooked(s3_server: Any) -> None:
    client = _make(s3_server)
    assert isinstance(_fast.for_client(client, SMALL_PARTS), _fast.FastS3)

    def hook(**_: Any) -> None:
        pass

    client.meta.events.register("before-send.s3.GetObject", hook)
    assert _fast.for_client(client, SMALL_PARTS) is None  # the hook must see every call
    client.meta.events.unregister("before-send.s3.GetObject", hook)
    assert isinstance(_fast.for_client(client, SMALL_PARTS), _fast.FastS3)


def test_other_clients_use_boto3(s3_server: Any) -> None:
    import boto3

    plain = boto3.client(
        "s3",
        endpoint_url=s3_server.endpoint_url,
        aws_access_key_id=s3_server.access_key,
        aws_secret_access_key=s3_server.secret_key,
        region_name="us-east-1",
    )
    assert _fast.for_client(plain, SMALL_PARTS) is None


def test_round_trip_through_the_lean_path(s3_server: Any, bucket: str, tmp_path: Path) -> None:
    client = _make(s3_server)
    assert _fast.for_client(client, SMALL_PARTS) is not None
    files = {
        "é t/naïve file.txt": b"naive",
        "plus+sign.txt": b"plus",
        "100%/pct %41.txt": b"pct",
        "日本/データ.bin": os.urandom(3 * MiB),  # streamed from disk (> one chunk)
        "tilde~=&;,$@.txt": b"odd",
        "empty": b"",
        "big.bin": os.urandom(12 * MiB + 7),  # multipart up, ranged GETs down
    }
    src, dest = tmp_path / "src", tmp_path / "dest"
    for rel, body in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(body)

    out = publish_private(client, bucket, "run", src, SMALL_PARTS, manifest_extra={})
    stats = stage_in(client, bucket, "run/", dest, SMALL_PARTS)

    assert out.stats.retries == stats.retries == 0
    for rel, body in files.items():
        assert (dest / rel).read_bytes() == body, rel
    assert {p.name for p in dest.rglob("*.hookpart-*")} == set()


def test_lean_path_errors_are_botocore_errors_with_the_code(
    s3_server: Any, bucket: str, tmp_path: Path
) -> None:
    client = _make(s3_server)
    with pytest.raises(StagingError, match="NoSuchBucket"):
        stage_in(client, bucket + "-missing", "in/", tmp_path, SMALL_PARTS)


def test_multipart_object_with_an_untyped_checksum_stages_in(
    s3_server: Any, s3: Any, bucket: str, tmp_path: Path
) -> None:
    # boto3's upload_file (multipart, default CRC32) to moto: HEAD answers a CRC32 without a
    # ChecksumType or "-N" suffix that is not the whole object's; it must not fail the staging.
    from boto3.s3.transfer import TransferConfig

    big = os.urandom(12 * MiB + 5)
    (tmp_path / "big.bin").write_bytes(big)
    s3.upload_file(
        str(tmp_path / "big.bin"),
        bucket,
        "mp/big.bin",
        Config=TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB),
    )
    assert "-" in s3.head_object(Bucket=bucket, Key="mp/big.bin")["ETag"]
    client = _make(s3_server)

    stage_in(client, bucket, "mp/", tmp_path / "dest", SMALL_PARTS)

    assert (tmp_path / "dest" / "big.bin").read_bytes() == big
