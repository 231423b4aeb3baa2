"""Legal multibyte names stage; a name no file system can hold is refused before any download."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import SecretStr

from hook_processor.errors import ExitCode, StagingError
from hook_processor.storage import S3Target, TransferSettings, make_client, stage_in

MiB = 1024 * 1024
SETTINGS = TransferSettings(concurrency=4, part_size=5 * MiB, multipart_threshold=6 * MiB)
CJK = "漢" * 80  # 80 characters, 240 bytes: a legal name
EMOJI = "😀" * 63  # 63 characters, 252 bytes: a legal name


def _client(s3_server):  # type: ignore[no-untyped-def]
    target = S3Target(
        s3_server.endpoint_url, SecretStr(s3_server.access_key), SecretStr(s3_server.secret_key)
    )
    return make_client(target, SETTINGS)


def test_names_of_240_and_252_bytes_stage_small_and_ranged(
    s3_server, s3, bucket, tmp_path: Path
) -> None:
    assert (len(CJK.encode()), len(EMOJI.encode())) == (240, 252)
    big = os.urandom(13 * MiB)  # ranged GETs into one temporary file
    files = {
        f"in/{CJK}": b"cjk",
        f"in/{EMOJI}": b"emoji",
        f"in/d/{EMOJI}": big,
        f"in/{CJK[:70]}/{EMOJI}": b"nested",  # a long folder name too
    }
    for key, body in files.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)

    stats = stage_in(_client(s3_server), bucket, "in/", tmp_path / "dest", SETTINGS)

    assert stats.files == len(files)
    for key, body in files.items():
        assert (tmp_path / "dest" / key.removeprefix("in/")).read_bytes() == body
    leftovers = [p.name for p in (tmp_path / "dest").rglob("*") if ".hookpart-" in p.name]
    assert leftovers == []


def test_a_name_over_255_bytes_is_refused_before_any_download_naming_the_key(
    s3_server, s3, bucket, tmp_path: Path
) -> None:
    too_long = "漢" * 86  # 258 bytes
    s3.put_object(Bucket=bucket, Key="in/a-fine-file.txt", Body=b"fine")
    s3.put_object(Bucket=bucket, Key=f"in/sub/{too_long}", Body=b"x")

    with pytest.raises(StagingError) as caught:
        stage_in(_client(s3_server), bucket, "in/", tmp_path / "dest", SETTINGS)

    message = str(caught.value)
    assert f"in/sub/{too_long}" in message
    assert "258 bytes" in message and "255" in message
    assert caught.value.exit_code == ExitCode.STAGING_FAILED
    assert not (tmp_path / "dest").exists()  # nothing downloaded, not even the fine file
