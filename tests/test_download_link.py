"""The TEMPORARY download link: SigV4, its validity, and the ranged GET that proves it works.

rclone serve s3 verifies signatures and refuses SigV2 links (HTTP 400); moto accepts both.
"""

from __future__ import annotations

import io
import logging
import urllib.parse
import urllib.request
import uuid
import zipfile
from pathlib import Path

import pytest
from fault_proxy import FaultProxy, Rule
from pydantic import SecretStr
from test_signatures import ACCESS, SECRET, verifying_s3  # noqa: F401 - the rclone fixture

from hook_processor import runtime
from hook_processor._s3 import link
from hook_processor.errors import ExitCode
from hook_processor.options import OptionSources
from hook_processor.storage import S3Target, TransferSettings, make_client

HELLO_WORLD = Path(__file__).resolve().parent.parent / "examples" / "hello_world"


def _env(
    s3_server, in_bucket: str, work: Path, endpoint: str, bucket: str, access: str, secret: str
):  # type: ignore[no-untyped-def]  # noqa: E501
    return {
        "SOURCE_S3_ENDPOINT_URL": s3_server.endpoint_url,
        "SOURCE_S3_PATH": f"s3://{in_bucket}/in",
        "SOURCE_S3_ACCESS_KEY": s3_server.access_key,
        "SOURCE_S3_SECRET_KEY": s3_server.secret_key,
        "OUTPUT_STORAGE": "TEMPORARY",
        "HOOK_TEMPORARY_S3_ENDPOINT_URL": endpoint,
        "HOOK_TEMPORARY_S3_BUCKET": bucket,
        "HOOK_TEMPORARY_S3_ACCESS_KEY": access,
        "HOOK_TEMPORARY_S3_SECRET_KEY": secret,
        "HOOK_WORK_DIR": str(work),
    }


def _sigv4_query(url: str) -> dict[str, list[str]]:
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert query.get("X-Amz-Algorithm") == ["AWS4-HMAC-SHA256"], url.split("?")[0]
    assert "Signature" not in query and "AWSAccessKeyId" not in query  # no SigV2
    return query


def _download_zip(url: str) -> zipfile.ZipFile:
    with urllib.request.urlopen(url) as response:  # noqa: S310 - 127.0.0.1 only
        return zipfile.ZipFile(io.BytesIO(response.read()))


def test_temporary_link_on_a_sigv4_only_store_is_sigv4_14_days_and_downloads(
    s3_server,
    s3,
    bucket,
    verifying_s3: str,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    s3.put_object(Bucket=bucket, Key="in/example.data", Body=b"abc")
    tmp_client = make_client(
        S3Target(verifying_s3, SecretStr(ACCESS), SecretStr(SECRET)), TransferSettings()
    )
    tmp_bucket = f"zips-{uuid.uuid4().hex[:8]}"
    tmp_client.boto.create_bucket(Bucket=tmp_bucket)
    env = _env(s3_server, bucket, tmp_path / "work", verifying_s3, tmp_bucket, ACCESS, SECRET)

    result = runtime.run(OptionSources(env=env), project_dir=HELLO_WORLD)

    assert result.exit_code == ExitCode.COMPLETED, result.status_message
    url = result.to_json()["DownloadLink"]
    assert _sigv4_query(url)["X-Amz-Expires"] == ["1209600"]  # rclone allows 14 days
    assert _download_zip(url).read("example.data") == b"ABC"


def test_temporary_link_on_moto_is_sigv4_and_downloads(s3_server, s3, bucket, tmp_path) -> None:
    s3.put_object(Bucket=bucket, Key="in/example.data", Body=b"xyz")
    env = _env(
        s3_server,
        bucket,
        tmp_path / "work",
        s3_server.endpoint_url,
        bucket,
        s3_server.access_key,
        s3_server.secret_key,
    )

    result = runtime.run(OptionSources(env=env), project_dir=HELLO_WORLD)

    assert result.exit_code == ExitCode.COMPLETED, result.status_message
    url = result.to_json()["DownloadLink"]
    assert _sigv4_query(url)["X-Amz-Expires"] == ["1209600"]
    assert _download_zip(url).read("example.data") == b"XYZ"


def test_a_link_that_does_not_work_fails_the_run_5_with_the_http_status(
    s3_server, s3, bucket, tmp_path
) -> None:
    s3.put_object(Bucket=bucket, Key="in/example.data", Body=b"abc")
    with FaultProxy(upstream=s3_server.endpoint_url) as proxy:
        # Uploads pass; any GET through a presigned link (its signature in the query) is refused.
        proxy.add_rule(
            Rule(
                fault="status",
                status=403,
                code="AccessDenied",
                methods={"GET"},
                query={"X-Amz-Signature"},
            )  # fmt: skip
        )
        env = _env(
            s3_server,
            bucket,
            tmp_path / "work",
            proxy.endpoint_url,
            bucket,
            s3_server.access_key,
            s3_server.secret_key,
        )
        result = runtime.run(OptionSources(env=env), project_dir=HELLO_WORLD)
        probes = [e for e in proxy.events if e.rule == "status"]

        assert result.exit_code == ExitCode.PUBLISH_FAILED, result.status_message
        assert "download link" in result.status_message
        assert "HTTP 403" in result.status_message
        assert "X-Amz-Signature" not in result.status_message  # the link itself is never shown
        assert probes  # the ranged GET was made
        assert result.to_json().get("DownloadLink") in (None, "")

        # HOOK_VERIFY_LINK=0: no check, the run completes (as before) with the link it made
        env["HOOK_VERIFY_LINK"] = "0"
        env["HOOK_WORK_DIR"] = str(tmp_path / "work2")
        unchecked = runtime.run(OptionSources(env=env), project_dir=HELLO_WORLD)
        assert unchecked.exit_code == ExitCode.COMPLETED, unchecked.status_message
        assert len([e for e in proxy.events if e.rule == "status"]) == len(probes)


def test_an_aws_endpoint_caps_the_link_at_7_days_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = make_client(
        S3Target("https://s3.eu-central-1.amazonaws.com", SecretStr("AK"), SecretStr("SK")),
        TransferSettings(),
    )
    with caplog.at_level(logging.WARNING, logger="hook_processor"):
        url, seconds = link.download_link(client, "b", "k.zip", 14 * 24 * 3600, verify=False)
    assert seconds == 7 * 24 * 3600
    assert _sigv4_query(url)["X-Amz-Expires"] == ["604800"]
    assert "AWS caps SigV4 links at 7 days" in caplog.text
    # another store keeps the validity asked for
    other = make_client(S3Target("http://127.0.0.1:9", SecretStr("AK"), SecretStr("SK")),
                        TransferSettings())  # fmt: skip
    url, seconds = link.download_link(other, "b", "k.zip", 14 * 24 * 3600, verify=False)
    assert (seconds, _sigv4_query(url)["X-Amz-Expires"]) == (1209600, ["1209600"])
