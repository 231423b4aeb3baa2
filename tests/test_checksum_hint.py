"""Every 4xx that a store may give to the flexible-checksum headers names the switch.

411 MissingContentLength is what ``rclone serve s3`` answers a body sent aws-chunked (botocore's
checksum trailer over https); before, only 400 and 501 carried the hint.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fault_proxy import FaultProxy, Rule
from pydantic import SecretStr

from hook_processor.errors import PublishError
from hook_processor.storage import S3Target, TransferSettings, make_client, publish_private

SWITCH = "HOOK_S3_CHECKSUM=when_required"


@pytest.fixture
def proxy(s3_server) -> Iterator[FaultProxy]:  # type: ignore[no-untyped-def]
    with FaultProxy(upstream=s3_server.endpoint_url) as p:
        yield p


def publish(proxy: FaultProxy, s3_server, bucket: str, tmp_path: Path, **settings):  # type: ignore[no-untyped-def]
    src = tmp_path / "out"
    src.mkdir(exist_ok=True)
    (src / "a.txt").write_bytes(b"a")
    target = S3Target(
        proxy.endpoint_url, SecretStr(s3_server.access_key), SecretStr(s3_server.secret_key)
    )
    chosen = TransferSettings(max_attempts=1, **settings)
    with pytest.raises(PublishError) as caught:
        publish_private(make_client(target, chosen), bucket, "run", src, chosen, manifest_extra={})
    return str(caught.value)


@pytest.mark.parametrize("engine", ["lean", "boto3", "obstore"])
@pytest.mark.parametrize(
    ("status", "code"),
    [(411, "MissingContentLength"), (400, "InvalidRequest"), (403, "InvalidDigest")],
)
def test_a_4xx_for_the_checksum_headers_names_the_switch(
    proxy: FaultProxy, s3_server, bucket: str, tmp_path: Path, engine: str, status: int, code: str
) -> None:
    proxy.add_rule(Rule(fault="reject_checksum_headers", status=status, code=code))
    message = publish(proxy, s3_server, bucket, tmp_path, engine=engine)
    assert code in message
    assert SWITCH in message


def test_an_access_denied_does_not_blame_the_checksums(
    proxy: FaultProxy, s3_server, bucket: str, tmp_path: Path
) -> None:
    proxy.add_rule(Rule(fault="status", status=403, code="AccessDenied", methods="PUT"))
    message = publish(proxy, s3_server, bucket, tmp_path)
    assert "AccessDenied" in message
    assert SWITCH not in message


@pytest.mark.parametrize("engine", ["lean", "boto3", "obstore"])
def test_a_bad_digest_says_the_bytes_were_corrupted_not_that_the_checksums_are_unsupported(
    proxy: FaultProxy, s3_server, bucket: str, tmp_path: Path, engine: str
) -> None:
    """BadDigest: the store got other bytes than their checksum says (corrupted on the way).
    Switching the checksums off would not be the fix; running again is."""
    proxy.add_rule(Rule(fault="status", status=400, code="BadDigest", methods="PUT"))
    message = publish(proxy, s3_server, bucket, tmp_path, engine=engine)
    assert "BadDigest" in message
    assert SWITCH not in message
    assert "corrupted on the way" in message
    assert "run again" in message
