"""A listing that never ends is stopped with a clear exit 3, on both engines.

A tiny fake S3 (stdlib http.server on 127.0.0.1) answers every ListObjectsV2 with a truncated
page: the same continuation token forever, or a fresh one forever. It ends the listing after
``end_after`` pages (300) so that, without the checks, the test fails instead of hanging.
"""

from __future__ import annotations

from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from pydantic import SecretStr
from scripted_server import serving

from hook_processor._s3 import download
from hook_processor._s3 import listing as s3_listing
from hook_processor.errors import ExitCode, StagingError
from hook_processor.storage import S3Target, TransferSettings, make_client, stage_in


class _FakeS3(BaseHTTPRequestHandler):
    fresh_tokens = False
    end_after = 300
    pages = 0

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        cls = type(self)
        cls.pages += 1
        if "list-type=2" not in self.path:
            self.send_error(404)
            return
        truncated = cls.pages < cls.end_after
        token = f"tok-{cls.pages}" if cls.fresh_tokens else "the-same-token"
        next_token = f"<NextContinuationToken>{token}</NextContinuationToken>" if truncated else ""
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            "<Name>b</Name><Prefix>in/</Prefix><KeyCount>1</KeyCount><MaxKeys>1000</MaxKeys>"
            f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>{next_token}"
            f"<Contents><Key>in/file-{cls.pages}.txt</Key><Size>0</Size>"
            '<ETag>"d41d8cd98f00b204e9800998ecf8427e"</ETag>'
            "<LastModified>2026-01-01T00:00:00.000Z</LastModified></Contents>"
            "</ListBucketResult>"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_s3() -> Iterator[tuple[str, type[_FakeS3]]]:
    handler = type("Handler", (_FakeS3,), {"pages": 0})
    with serving(handler) as endpoint:
        yield endpoint, handler


def _client(endpoint: str, engine: str):  # type: ignore[no-untyped-def]
    settings = TransferSettings(engine=engine, max_attempts=1)
    client = make_client(S3Target(endpoint, SecretStr("ak"), SecretStr("sk")), settings)
    assert client.name == engine
    return client, settings


@pytest.mark.parametrize("engine", ["lean", "boto3", "obstore"])
def test_the_same_continuation_token_on_every_page_is_exit_3_at_the_second_page(
    fake_s3: tuple[str, type[_FakeS3]], engine: str, tmp_path: Path
) -> None:
    endpoint, handler = fake_s3
    client, settings = _client(endpoint, engine)

    with pytest.raises(StagingError) as caught:
        stage_in(client, "b", "in/", tmp_path / "dest", settings)

    assert caught.value.exit_code == ExitCode.STAGING_FAILED
    message = str(caught.value)
    assert "listing of s3://b/in/" in message and "never ends" in message
    assert "continuation token of an earlier page" in message
    assert handler.pages == 2  # stopped as soon as the token came back
    assert not (tmp_path / "dest").exists()


@pytest.mark.parametrize("engine", ["lean", "boto3", "obstore"])
def test_a_listing_with_fresh_tokens_forever_is_capped(
    fake_s3: tuple[str, type[_FakeS3]],
    engine: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    endpoint, handler = fake_s3
    handler.fresh_tokens = True
    monkeypatch.setattr(s3_listing, "MAX_LIST_PAGES", 50)
    client, settings = _client(endpoint, engine)

    with pytest.raises(StagingError) as caught:
        stage_in(client, "b", "in/", tmp_path / "dest", settings)

    assert "more than 50 pages (50 keys so far)" in str(caught.value)
    assert handler.pages == 50
    assert not (tmp_path / "dest").exists()


def test_listed_objects_keep_only_key_size_and_etag(fake_s3: tuple[str, type[_FakeS3]]) -> None:
    """boto3's entries (dates, storage class, ...) are not kept: a key costs a small dict."""
    endpoint, handler = fake_s3
    handler.fresh_tokens = True
    handler.end_after = 3
    client, settings = _client(endpoint, "boto3")
    job = download.Job(
        client, "b", settings, error=StagingError, phase="t", cancel=None, progress=None
    )
    listing = s3_listing.list_objects(job, "in/")
    assert [sorted(o) for o in listing] == [["ETag", "Key", "Size"]] * 3
    assert [o["Key"] for o in listing] == ["in/file-1.txt", "in/file-2.txt", "in/file-3.txt"]
