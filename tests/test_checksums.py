"""Every byte checked: each upload request carries a checksum the store verifies, in both
``HOOK_S3_CHECKSUM`` modes and on every engine; each download is checked against the stored
checksum or the MD5 ETag.

The fault proxy records every request it forwards with the digests of the body the client really
sent: a header is "verifying" only if it matches those bytes.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fault_proxy import FaultProxy, Rule, Sent
from pydantic import SecretStr
from test_signatures import ACCESS, SECRET, verifying_s3  # noqa: F401 - the rclone fixture

from hook_processor.errors import ExitCode, StagingError
from hook_processor.storage import (
    S3Target,
    TransferSettings,
    make_client,
    publish_private,
    publish_temporary,
    stage_in,
)

MiB = 1024 * 1024
ENGINES = ["lean", "boto3", "obstore"]
MODES = ["when_supported", "when_required"]
SMALL_PARTS = TransferSettings(concurrency=4, part_size=5 * MiB, multipart_threshold=6 * MiB)


@pytest.fixture
def proxy(s3_server: Any) -> Iterator[FaultProxy]:
    with FaultProxy(upstream=s3_server.endpoint_url) as p:
        yield p


def _client(endpoint: str, engine: str, mode: str, access: str, secret: str) -> tuple[Any, Any]:
    settings = dataclasses.replace(SMALL_PARTS, engine=engine, checksum=mode)
    target = S3Target(endpoint, SecretStr(access), SecretStr(secret))
    return make_client(target, settings), settings


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def _kind(sent: Sent) -> str:
    return "UploadPart" if {"partNumber", "uploadId"} <= sent.query_names else "PutObject"


def assert_verified(sent: Sent, engine: str, mode: str) -> None:
    """The request's own checksum headers match the bytes it sent (what the store checks)."""
    what = f"{_kind(sent)} {sent.target} ({engine}, {mode})"
    if engine == "obstore" and _kind(sent) == "PutObject":
        # object_store signs the body's real SHA-256 (both modes) and sends it as the flexible
        # checksum too (when_supported); it cannot send Content-MD5: the engine compares the
        # ETag the store answers with the body's MD5 (test_obstore_flip_on_a_store_...).
        assert sent.headers.get("x-amz-content-sha256") == sent.sha256, what
        expected = _b64(bytes.fromhex(sent.sha256)) if mode == "when_supported" else None
        assert sent.headers.get("x-amz-checksum-sha256") == expected, what
        return
    assert sent.headers.get("content-md5") == _b64(bytes.fromhex(sent.md5)), what
    if engine != "boto3" and _kind(sent) == "UploadPart":
        # The lean engine's parts (obstore's too, sent by its lean helper): Content-MD5, signed,
        # is the one check; no second pass over the bytes for a signed SHA-256 or a CRC32 that
        # would only be part of a composite checksum (test_a_byte_flipped_in_a_part_...).
        assert sent.headers.get("x-amz-content-sha256") == "UNSIGNED-PAYLOAD", what
        assert "content-md5" in _signed_headers(sent), what
        assert not any(h.startswith("x-amz-checksum-") for h in sent.headers), what
        return
    if mode == "when_supported":
        crc = sent.headers.get("x-amz-checksum-crc32")
        assert crc == _b64(sent.crc32.to_bytes(4, "big")), what
    if engine == "lean":  # a PutObject is signed with its real SHA-256 (the manifest's too)
        assert sent.headers.get("x-amz-content-sha256") == sent.sha256, what


def _signed_headers(sent: Sent) -> set[str]:
    authorization = sent.headers.get("authorization", "")
    signed = authorization.split("SignedHeaders=", 1)[1].split(",", 1)[0]
    return set(signed.split(";"))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("engine", ENGINES)
def test_every_upload_request_carries_a_verifying_checksum(
    s3_server: Any, s3: Any, bucket: str, proxy: FaultProxy, tmp_path: Path, engine: str, mode: str
) -> None:
    client, settings = _client(
        proxy.endpoint_url, engine, mode, s3_server.access_key, s3_server.secret_key
    )
    files = {
        "small.txt": b"small",
        "mid.bin": os.urandom(2 * MiB + 3),  # one PUT, more than one read block
        "big.bin": os.urandom(12 * MiB + 5),  # multipart: 3 parts
    }
    src = tmp_path / "src"
    src.mkdir()
    for name, body in files.items():
        (src / name).write_bytes(body)
    small_zip, big_zip = tmp_path / "z1", tmp_path / "z2"
    small_zip.mkdir()
    (small_zip / "a.txt").write_bytes(b"zip me")
    big_zip.mkdir()
    (big_zip / "noise.bin").write_bytes(os.urandom(11 * MiB))  # incompressible: 3 parts

    publish_private(client, bucket, "run", src, settings, manifest_extra={})  # PRIVATE
    publish_temporary(client, bucket, "tmp/small.zip", small_zip, settings)  # TEMPORARY
    publish_temporary(client, bucket, "tmp/big.zip", big_zip, settings)

    uploads = [s for s in proxy.sent if s.method == "PUT"]
    kinds = sorted(_kind(s) for s in uploads)
    # small, mid, manifest, small.zip; 3 parts of big.bin and 3 of big.zip
    assert kinds == ["PutObject"] * 4 + ["UploadPart"] * 6
    for sent in uploads:
        assert_verified(sent, engine, mode)
    for name, body in files.items():
        assert s3.get_object(Bucket=bucket, Key=f"run/{name}")["Body"].read() == body


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("engine", ENGINES)
def test_a_byte_flipped_on_the_way_up_is_rejected_by_the_store_and_the_run_fails_5(
    verifying_s3: str,  # noqa: F811
    tmp_path: Path,
    engine: str,
    mode: str,
) -> None:
    from exec_helpers import HELLO_WORLD, private_env

    from hook_processor import runtime
    from hook_processor.options import OptionSources

    admin, _ = _client(verifying_s3, "boto3", "when_required", ACCESS, SECRET)
    name = f"f-{uuid.uuid4().hex[:10]}"
    admin.boto.create_bucket(Bucket=name)
    admin.boto.put_object(
        Bucket=name, Key="dedl_hello_world/input_file_location/example.data", Body=b"abc" * 1000
    )
    with FaultProxy(upstream=verifying_s3) as up:
        # the first upload of an output file is corrupted (not the preflight's probe or lease)
        up.add_rule(
            Rule(
                fault="flip_request_byte",
                methods="PUT",
                key_pattern=r"example\.data$",
                offset=10,
                count=1,
            )
        )
        server = type("S", (), {"endpoint_url": up.endpoint_url, "access_key": ACCESS})
        env = private_env(server, name, name, tmp_path / "w", HOOK_S3_ENGINE=engine)
        env.update(
            SOURCE_S3_SECRET_KEY=SECRET,
            OUTPUT_S3_SECRET_KEY=SECRET,
            HOOK_S3_CHECKSUM=mode,
            HOOK_S3_MAX_ATTEMPTS="2",
        )
        stream = io.StringIO()
        result = runtime.run(OptionSources(env=env), project_dir=HELLO_WORLD, log_stream=stream)

    assert [e.rule for e in up.events] == ["flip_request_byte"]
    assert result.exit_code == ExitCode.PUBLISH_FAILED, stream.getvalue()
    assert "BadDigest" in result.status_message or "Mismatch" in result.status_message
    listing = admin.boto.list_objects_v2(Bucket=name, Prefix="results/")
    keys = {o["Key"] for o in listing.get("Contents", [])}
    # Not published: no manifest, and not the corrupted file (the STAC catalog beside it may
    # have been uploaded first: objects that no manifest lists, as of any failed run).
    assert keys <= {"results/run1/catalog.json", "results/run1/_stac/example.data.json"}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("engine", ENGINES)
def test_a_byte_flipped_in_a_part_on_the_way_up_is_rejected_and_nothing_is_published(
    verifying_s3: str,  # noqa: F811
    tmp_path: Path,
    engine: str,
    mode: str,
) -> None:
    """A part's one check (Content-MD5 for the lean engine and obstore's helper) is enough: the
    store refuses the corrupted part, the publication fails naming it, no object is made."""
    from hook_processor.errors import PublishError

    admin, _ = _client(verifying_s3, "boto3", "when_required", ACCESS, SECRET)
    name = f"p-{uuid.uuid4().hex[:10]}"
    admin.boto.create_bucket(Bucket=name)
    src = tmp_path / "src"
    src.mkdir()
    (src / "big.bin").write_bytes(os.urandom(12 * MiB + 5))  # 3 parts of 5 MiB
    with FaultProxy(upstream=verifying_s3) as up:
        up.add_rule(
            Rule(fault="flip_request_byte", methods="PUT", query="partNumber", offset=7, nth=2)
        )
        client, settings = _client(up.endpoint_url, engine, mode, ACCESS, SECRET)
        with pytest.raises(PublishError) as caught:
            publish_private(client, name, "run", src, settings, manifest_extra={})
    assert [e.rule for e in up.events] == ["flip_request_byte"]
    assert "BadDigest" in str(caught.value) or "Mismatch" in str(caught.value), caught.value
    assert "big.bin" in str(caught.value)
    listing = admin.boto.list_objects_v2(Bucket=name)
    assert [o["Key"] for o in listing.get("Contents", [])] == []


def _no_checksum_client(s3_server: Any) -> Any:
    """A boto3 client that stores objects without a flexible checksum (only the MD5 ETag)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=s3_server.endpoint_url,
        aws_access_key_id=s3_server.access_key,
        aws_secret_access_key=s3_server.secret_key,
        region_name="us-east-1",
        config=Config(request_checksum_calculation="when_required"),
    )


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("engine", ENGINES)
def test_a_flipped_byte_in_a_download_without_stored_checksum_is_caught_by_the_md5_etag(
    s3_server: Any, bucket: str, proxy: FaultProxy, tmp_path: Path, engine: str, mode: str
) -> None:
    body = os.urandom(300_000)
    plain = _no_checksum_client(s3_server)
    plain.put_object(Bucket=bucket, Key="d/a.bin", Body=body)
    assert "ChecksumCRC32" not in plain.head_object(
        Bucket=bucket, Key="d/a.bin", ChecksumMode="ENABLED"
    )
    proxy.add_rule(Rule(fault="flip_byte", methods="GET", key_pattern=r"a\.bin$", count=1))
    client, settings = _client(
        proxy.endpoint_url, engine, mode, s3_server.access_key, s3_server.secret_key
    )

    stats = stage_in(client, bucket, "d/", tmp_path, settings)

    assert [e.rule for e in proxy.events] == ["flip_byte"]
    assert (tmp_path / "a.bin").read_bytes() == body  # retried, never kept corrupt
    assert stats.retries >= 1


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("engine", ENGINES)
def test_objects_stored_with_sse_kms_are_staged_although_their_etag_is_no_md5(
    s3_server: Any, bucket: str, proxy: FaultProxy, tmp_path: Path, engine: str, mode: str
) -> None:
    # A store keeping objects with SSE-KMS answers ETags that are not the objects' MD5s and
    # says so in x-amz-server-side-encryption (the proxy plays that store: moto keeps the MD5).
    # obstore shows no response headers: its engine once took such an ETag for a corrupted body.
    plain = _no_checksum_client(s3_server)
    small, big = os.urandom(300_000), os.urandom(12 * MiB)
    for key, body in (("k/small.bin", small), ("k/big.bin", big)):
        etag = plain.put_object(Bucket=bucket, Key=key, Body=body)["ETag"].strip('"')
        not_md5 = etag[::-1] if etag[::-1] != etag else "0" * 32
        proxy.add_rule(Rule(fault="sse_kms", etag_from=etag, etag_to=not_md5))
    client, settings = _client(
        proxy.endpoint_url, engine, mode, s3_server.access_key, s3_server.secret_key
    )

    stats = stage_in(client, bucket, "k/", tmp_path, settings)

    assert (tmp_path / "small.bin").read_bytes() == small
    assert (tmp_path / "big.bin").read_bytes() == big
    assert stats.retries == 0  # not taken for corrupted bodies
    assert {e.rule for e in proxy.events} == {"sse_kms"}


@pytest.mark.parametrize("engine", ENGINES)
def test_a_flipped_byte_in_a_ranged_download_fails_on_the_md5_etag_when_required(
    s3_server: Any, bucket: str, proxy: FaultProxy, tmp_path: Path, engine: str
) -> None:
    plain = _no_checksum_client(s3_server)
    plain.put_object(Bucket=bucket, Key="r/big.bin", Body=os.urandom(12 * MiB))
    proxy.add_rule(Rule(fault="flip_byte", methods="GET", key_pattern=r"big\.bin$", count=1))
    client, settings = _client(
        proxy.endpoint_url, engine, "when_required", s3_server.access_key, s3_server.secret_key
    )
    with pytest.raises(StagingError, match="do not match the object's stored MD5 checksum"):
        stage_in(client, bucket, "r/", tmp_path, settings)
    assert list(tmp_path.iterdir()) == []
