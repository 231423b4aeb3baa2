"""The storage invariants, proven on every selectable engine through the fault proxy.

Each test points a ``make_client`` client of one engine (``lean`` and ``boto3``) at
``tests/fault_proxy.py`` in front of the session's moto server and reads the proxy's request log
(``proxy.sent``: the headers of every forwarded request) and its fault log (``proxy.events``).
No botocore event hook is used: a hook would only ever see the boto3 engine.

Small part sizes (``SMALL_RANGES``) make a 1 MiB object come down as four ranged GETs, so the
ranged path runs without megabytes of test data (moto's 5 MiB part minimum only binds uploads).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from pydantic import SecretStr

from hook_processor.errors import StagingError
from hook_processor.storage import (
    MANIFEST_NAME,
    S3Target,
    TransferSettings,
    make_client,
    publish_private,
    stage_in,
)

try:
    from fault_proxy import FaultProxy, Rule, Sent
except ImportError:  # tests/ became a package
    from tests.fault_proxy import FaultProxy, Rule, Sent  # type: ignore[no-redef]

KiB = 1024
ENGINES = ["lean", "boto3", "obstore"]
# Objects above 256 KiB come down as ranged GETs of 256 KiB (the part size), in order.
SMALL_RANGES = TransferSettings(concurrency=4, part_size=256 * KiB, multipart_threshold=256 * KiB)
BIG = 1024 * KiB + 123  # five ranged GETs with SMALL_RANGES (the last one of 123 bytes)


def payload(n: int, salt: str) -> bytes:
    """``n`` bytes that differ everywhere a misplaced or mixed range could hide."""
    block = hashlib.sha256(salt.encode()).digest() + bytes(range(256))
    return (block * (n // len(block) + 1))[:n]


@pytest.fixture(scope="module")
def s3(s3_server):  # type: ignore[no-untyped-def]
    """Direct to moto (never through the proxy): seeds and checks the store."""
    return s3_server.client()


@pytest.fixture
def proxy(s3_server) -> Iterator[FaultProxy]:  # type: ignore[no-untyped-def]
    with FaultProxy(upstream=s3_server.endpoint_url) as p:
        yield p


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def connect(s3_server, proxy, engine):  # type: ignore[no-untyped-def]
    """Make a client of the test's engine, pointed at the proxy; closed at teardown."""
    made: list[Any] = []

    def make(settings: TransferSettings = SMALL_RANGES) -> tuple[Any, TransferSettings]:
        settings = dataclasses.replace(settings, engine=engine)
        target = S3Target(
            proxy.endpoint_url, SecretStr(s3_server.access_key), SecretStr(s3_server.secret_key)
        )
        client = make_client(target, settings)
        assert client.name == engine  # the engine under test is the one that runs
        made.append(client)
        return client, settings

    yield make
    for client in made:
        client.close()


def object_gets(proxy: FaultProxy, key: str) -> list[Sent]:
    """The forwarded GetObject requests of ``key`` (path-style ``/bucket/key``)."""
    return [
        s for s in proxy.sent if s.method == "GET" and urlsplit(s.target).path.endswith("/" + key)
    ]


def lists(proxy: FaultProxy) -> list[dict[str, str]]:
    """The query parameters of every forwarded ListObjectsV2 request, in order."""
    return [
        dict(parse_qsl(urlsplit(s.target).query, keep_blank_values=True))
        for s in proxy.sent
        if s.method == "GET" and "list-type" in s.query_names
    ]


def byte_range(sent: Sent) -> tuple[int, int]:
    first, last = sent.headers["range"].removeprefix("bytes=").split("-")
    return int(first), int(last)


class Progress:
    """A storage.Progress that calls ``on_start`` after the listing, ``on_bytes`` per chunk."""

    def __init__(
        self,
        on_start: Callable[[], None] | None = None,
        on_bytes: Callable[[int], None] | None = None,
    ) -> None:
        self.on_start, self.on_bytes = on_start, on_bytes
        self.total = 0
        self.lock = threading.Lock()

    def start(self, files: int, nbytes: int | None) -> None:
        if self.on_start is not None:
            self.on_start()

    def __call__(self, nbytes: int) -> None:
        with self.lock:
            self.total += nbytes
        if self.on_bytes is not None:
            self.on_bytes(nbytes)

    def file_done(self) -> None:
        pass


def files_under(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


# --------------------------------------------------------------------------- If-Match pinning


def test_every_ranged_get_of_an_object_is_pinned_to_its_listed_etag(
    connect: Any, s3: Any, bucket: str, proxy: FaultProxy, tmp_path: Path
) -> None:
    big = payload(BIG, "pinned")
    s3.put_object(Bucket=bucket, Key="p/big.bin", Body=big)
    s3.put_object(Bucket=bucket, Key="p/small.txt", Body=b"small")
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="p/big.bin")["Contents"][0]["ETag"]
    client, settings = connect()

    stats = stage_in(client, bucket, "p/", tmp_path, settings)

    assert files_under(tmp_path) == {"big.bin": big, "small.txt": b"small"}
    assert stats.files == 2 and stats.retries == 0
    gets = object_gets(proxy, "p/big.bin")
    assert len(gets) == 5 and all("range" in g.headers for g in gets)
    # The ranges tile the object exactly, and every one names the version that was listed.
    spans = sorted(byte_range(g) for g in gets)
    assert spans[0][0] == 0 and spans[-1][1] == BIG - 1
    assert all(a[1] + 1 == b[0] for a, b in zip(spans, spans[1:], strict=False))
    assert {g.headers.get("if-match", "").strip('"') for g in gets} == {listed.strip('"')}


def test_an_object_replaced_mid_download_fails_the_staging_and_leaves_no_mixed_file(
    connect: Any, s3: Any, bucket: str, proxy: FaultProxy, tmp_path: Path
) -> None:
    old, new = payload(BIG, "old"), payload(BIG, "new")
    s3.put_object(Bucket=bucket, Key="v/blob.bin", Body=old)
    listed = s3.head_object(Bucket=bucket, Key="v/blob.bin")["ETag"]
    # The second ranged GET to arrive waits a second in the proxy; the first part's first bytes
    # put a new version (same size) straight into the store: the waiting GETs ask for the old one.
    proxy.add_rule(
        Rule(fault="latency", delay=1.0, methods="GET", key_pattern=r"/v/blob\.bin$", nth=2)
    )
    replaced = threading.Lock()

    def replace(_: int) -> None:
        if replaced.acquire(blocking=False):
            s3.put_object(Bucket=bucket, Key="v/blob.bin", Body=new)

    client, settings = connect(dataclasses.replace(SMALL_RANGES, max_attempts=2))
    with pytest.raises(
        StagingError, match=r"s3://.*/v/blob\.bin changed during staging.*run again"
    ):
        stage_in(client, bucket, "v/", tmp_path, settings, progress=Progress(on_bytes=replace))

    assert replaced.locked()  # the object really was replaced while it came down
    assert files_under(tmp_path) == {}  # neither a mixed file nor a temporary one is left
    gets = object_gets(proxy, "v/blob.bin")
    assert len(gets) >= 2 and all("range" in g.headers for g in gets)
    assert {g.headers.get("if-match", "").strip('"') for g in gets} == {listed.strip('"')}


def test_max_ranges_caps_the_ranged_gets_of_one_object(
    connect: Any, s3: Any, bucket: str, proxy: FaultProxy, tmp_path: Path
) -> None:
    # HOOK_DOWNLOAD_RANGES, for a store that reads the whole object for every ranged GET (moto,
    # the harness's): two ranges of about half the object instead of five of the part size.
    big = payload(BIG, "capped")
    s3.put_object(Bucket=bucket, Key="c/big.bin", Body=big)
    client, settings = connect(dataclasses.replace(SMALL_RANGES, max_ranges=2))

    stage_in(client, bucket, "c/", tmp_path, settings)

    assert files_under(tmp_path) == {"big.bin": big}
    spans = sorted(byte_range(g) for g in object_gets(proxy, "c/big.bin"))
    assert spans == [(0, BIG // 2 + 1 - 1), (BIG // 2 + 1, BIG - 1)]


def test_an_object_replaced_after_the_listing_is_staged_whole_or_refused(
    connect: Any, s3: Any, bucket: str, proxy: FaultProxy, tmp_path: Path
) -> None:
    # Replaced between the listing and its GETs: the HEAD that reads the object's checksum and
    # the ranged GETs ask for the listed ETag, and the store answers 412; nothing of either
    # version is kept.
    old, new = payload(BIG, "old"), payload(BIG, "new")
    s3.put_object(Bucket=bucket, Key="w/blob.bin", Body=old)
    listed = s3.head_object(Bucket=bucket, Key="w/blob.bin")["ETag"]

    def replace() -> None:
        s3.put_object(Bucket=bucket, Key="w/blob.bin", Body=new)

    client, settings = connect(dataclasses.replace(SMALL_RANGES, max_attempts=2))
    with pytest.raises(StagingError, match=r"w/blob\.bin changed during staging.*run again"):
        stage_in(client, bucket, "w/", tmp_path, settings, progress=Progress(on_start=replace))
    assert files_under(tmp_path) == {}
    asked = [
        s for s in proxy.sent if s.method in ("GET", "HEAD") and s.target.endswith("/w/blob.bin")
    ]
    assert asked  # the requests went out, pinned to the listed version, and were refused
    assert {s.headers.get("if-match", "").strip('"') for s in asked} == {listed.strip('"')}


def test_a_small_object_replaced_after_the_listing_is_refused_not_staged_unseen(
    connect: Any, s3: Any, bucket: str, proxy: FaultProxy, tmp_path: Path
) -> None:
    # One whole-object GET, pinned like the ranges: a new version of the same size (which the
    # size check cannot see) is refused instead of staged in place of the one listed.
    s3.put_object(Bucket=bucket, Key="s/a.txt", Body=b"version 1")
    listed = s3.head_object(Bucket=bucket, Key="s/a.txt")["ETag"]

    def replace() -> None:
        s3.put_object(Bucket=bucket, Key="s/a.txt", Body=b"version 2")

    client, settings = connect(dataclasses.replace(SMALL_RANGES, max_attempts=2))
    with pytest.raises(StagingError, match=r"s/a\.txt changed during staging.*run again"):
        stage_in(client, bucket, "s/", tmp_path, settings, progress=Progress(on_start=replace))
    assert files_under(tmp_path) == {}
    (get,) = object_gets(proxy, "s/a.txt")
    assert "range" not in get.headers and get.headers["if-match"].strip('"') == listed.strip('"')


# --------------------------------------------------------------------------- pagination


@pytest.fixture(scope="module")
def thousand_and_five(s3: Any) -> tuple[str, dict[str, bytes]]:
    """A bucket of 1,005 tiny objects: more than one page of ListObjectsV2 (1,000 keys)."""
    name = f"pages-{hashlib.sha256(str(id(s3)).encode()).hexdigest()[:10]}"
    s3.create_bucket(Bucket=name)
    objects = {f"many/{i // 100:02d}/{i:04d}.txt": f"{i}\n".encode() for i in range(1005)}
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(
            pool.map(lambda kv: s3.put_object(Bucket=name, Key=kv[0], Body=kv[1]), objects.items())
        )
    return name, objects


def test_a_listing_of_1005_keys_is_paged_and_every_object_is_staged(
    connect: Any, thousand_and_five: tuple[str, dict[str, bytes]], proxy: FaultProxy, tmp_path: Path
) -> None:
    name, objects = thousand_and_five
    client, settings = connect(dataclasses.replace(SMALL_RANGES, concurrency=8))

    stats = stage_in(client, name, "many/", tmp_path, settings)

    assert stats.files == 1005
    assert files_under(tmp_path) == {k.removeprefix("many/"): v for k, v in objects.items()}
    pages = lists(proxy)
    assert len(pages) == 2  # the store's page of 1,000 keys, then the last 5
    assert "continuation-token" not in pages[0] and pages[1]["continuation-token"]
    assert {p.get("prefix") for p in pages} == {"many/"}


# --------------------------------------------------------------------------- broken bodies


def test_a_body_reset_mid_stream_is_retried_with_the_same_range_and_pin(
    connect: Any, s3: Any, bucket: str, proxy: FaultProxy, tmp_path: Path
) -> None:
    big, small = payload(BIG, "reset-big"), payload(200 * KiB, "reset-small")
    s3.put_object(Bucket=bucket, Key="r/big.bin", Body=big)
    s3.put_object(Bucket=bucket, Key="r/small.bin", Body=small)
    # One ranged GET and the whole-object GET are cut by a TCP reset after 50,000 body bytes.
    for key in ("big", "small"):
        proxy.add_rule(
            Rule(
                fault="reset_after",
                after_bytes=50_000,
                methods="GET",
                key_pattern=rf"/r/{key}\.bin$",
                count=1,
            )
        )
    progress = Progress()
    client, settings = connect()

    stats = stage_in(client, bucket, "r/", tmp_path, settings, progress=progress)

    assert files_under(tmp_path) == {"big.bin": big, "small.bin": small}
    assert [e.rule for e in proxy.events] == ["reset_after", "reset_after"]
    assert stats.retries == 2
    assert progress.total == len(big) + len(small)  # the broken attempts' bytes were taken back
    # The ranged GET was asked again: one range twice, both times pinned to the same ETag.
    gets = object_gets(proxy, "r/big.bin")
    spans = [byte_range(g) for g in gets]
    assert len(gets) == 6 and len(set(spans)) == 5  # five ranges, one of them asked twice
    assert len({g.headers["if-match"] for g in gets}) == 1
    assert len(object_gets(proxy, "r/small.bin")) == 2


# --------------------------------------------------------------------------- 503 bursts


def test_503_bursts_on_list_get_and_put_are_retried_and_counted(
    connect: Any, s3: Any, bucket: str, proxy: FaultProxy, tmp_path: Path
) -> None:
    big, small = payload(BIG, "burst-big"), b"burst\n"
    s3.put_object(Bucket=bucket, Key="b/big.bin", Body=big)
    s3.put_object(Bucket=bucket, Key="b/small.txt", Body=small)
    slow = dict(fault="status", status=503, code="SlowDown")
    proxy.add_rule(Rule(**slow, methods="GET", query="list-type", count=2, name="list"))
    proxy.add_rule(Rule(**slow, methods="GET", key_pattern=r"/b/big\.bin$", count=3, name="get"))
    client, settings = connect()

    stats = stage_in(client, bucket, "b/", tmp_path / "in", settings)

    assert files_under(tmp_path / "in") == {"big.bin": big, "small.txt": small}
    assert [e.rule for e in proxy.events] == ["list"] * 2 + ["get"] * 3
    assert stats.retries == 5  # every 503 cost one retry, and each was counted

    proxy.clear_rules()
    proxy.clear_events()
    proxy.add_rule(Rule(**slow, methods="PUT", key_pattern=r"/out/big\.bin$", count=3, name="put"))
    outcome = publish_private(client, bucket, "out", tmp_path / "in", settings, manifest_extra={})

    assert [e.rule for e in proxy.events] == ["put"] * 3
    assert outcome.stats.retries == 3
    assert s3.get_object(Bucket=bucket, Key="out/big.bin")["Body"].read() == big
    assert s3.get_object(Bucket=bucket, Key="out/small.txt")["Body"].read() == small
    assert s3.head_object(Bucket=bucket, Key=f"out/{MANIFEST_NAME}")["ContentLength"] > 0
