"""hook_processor.storage against a real moto server over HTTP on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import subprocess
import sys
import threading
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from hook_processor.errors import Cancelled, OptionsError, PublishError, StagingError
from hook_processor.storage import (
    MANIFEST_NAME,
    PublishOutcome,
    S3Target,
    TransferSettings,
    make_client,
    parse_s3_url,
    publish_private,
    publish_temporary,
    stage_in,
)

MiB = 1024 * 1024
# moto enforces S3's 5 MiB minimum for non-last parts: 12 MiB is 3 parts of 5, 5 and 2 MiB.
SMALL_PARTS = TransferSettings(concurrency=4, part_size=5 * MiB, multipart_threshold=6 * MiB)
DEFAULT = TransferSettings(concurrency=8)
# The storage API's tests run on every selectable engine (the ``client`` fixture); the two that
# hook botocore's events to observe calls use ``boto3_client`` (the lean and obstore engines
# never send data calls through botocore); test_s3_invariants.py proves pinning, replacement,
# pagination and retries on every engine through the fault proxy instead.
ENGINES = ["lean", "boto3", "obstore"]
BOTO3 = TransferSettings(concurrency=8, engine="boto3")
ODD_NAMES = ["é t/naïve file.txt", "plus+sign.txt", "100%/pct %41.txt", "日本/データ.bin"]


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def s3(s3_server):  # type: ignore[no-untyped-def]
    """Overrides conftest's per-test client: creating a boto3 client costs ~0.3 s."""
    return s3_server.client()


def _make(s3_server: Any, engine: str) -> Any:
    target = S3Target(
        s3_server.endpoint_url, SecretStr(s3_server.access_key), SecretStr(s3_server.secret_key)
    )
    return make_client(target, dataclasses.replace(BOTO3, engine=engine))


@pytest.fixture(scope="module", params=ENGINES)
def _client(s3_server, request):  # type: ignore[no-untyped-def]
    client = _make(s3_server, request.param)
    yield client
    client.close()


@pytest.fixture(scope="module")
def _boto3_client(s3_server):  # type: ignore[no-untyped-def]
    client = _make(s3_server, "boto3")
    yield client
    client.close()


def _unhooked(client: Any) -> Iterator[Any]:
    """``client``, with the event hooks a test registers removed after it."""
    registered: list[tuple[str, Any]] = []
    original = client.boto.meta.events.register

    def register(event: str, handler: Any, *args: Any, **kwargs: Any) -> None:
        registered.append((event, handler))
        original(event, handler, *args, **kwargs)

    client.boto.meta.events.register = register
    yield client
    client.boto.meta.events.register = original
    for event, handler in registered:
        client.boto.meta.events.unregister(event, handler)


@pytest.fixture
def client(_client: Any) -> Iterator[Any]:
    """The module's make_client() client of each engine."""
    yield from _unhooked(_client)


@pytest.fixture
def boto3_client(_boto3_client: Any) -> Iterator[Any]:
    """A boto3-engine client, for the tests that observe its calls through botocore's hooks."""
    yield from _unhooked(_boto3_client)


def put_objects(s3: Any, bucket: str, objects: dict[str, bytes]) -> None:
    for key, body in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)


def read_tree(root: Path) -> dict[str, bytes]:
    """Every file under root (links not followed) as {relative posix path: bytes}."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for rel, body in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if ".hookpart-" in p.name]


def keys(s3: Any, bucket: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", ()))


def get(s3: Any, bucket: str, key: str) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


class Seen(list[int]):
    """A storage.Progress that records what a transfer reports: totals, bytes, files done."""

    def __init__(self, on_bytes: Callable[[int], None] | None = None) -> None:
        super().__init__()
        self.totals: tuple[int, int | None] | None = None
        self.files_done = 0
        self.on_bytes = on_bytes

    def start(self, files: int, nbytes: int | None) -> None:
        self.totals = (files, nbytes)

    def __call__(self, nbytes: int) -> None:
        self.append(nbytes)
        if self.on_bytes is not None:
            self.on_bytes(nbytes)

    def file_done(self) -> None:
        self.files_done += 1


def record_calls(client: Any, operation: str) -> list[dict[str, Any]]:
    """Parameters of every ``operation`` call the client makes, in order."""
    seen: list[dict[str, Any]] = []
    lock = threading.Lock()

    def hook(params: dict[str, Any], **_: Any) -> None:
        with lock:
            seen.append(dict(params))

    client.boto.meta.events.register(f"provide-client-params.s3.{operation}", hook)
    return seen


# --------------------------------------------------------------------------- parse_s3_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("s3://bucket/key/part", ("bucket", "key/part")),
        ("s3://bucket", ("bucket", "")),
        ("s3://bucket/", ("bucket", "")),
        (
            "s3://my.bucket-1/dedl_hello_world/input_file_location",
            ("my.bucket-1", "dedl_hello_world/input_file_location"),
        ),
        ("s3://b_1/a b/é+%/", ("b_1", "a b/é+%/")),
    ],
)
def test_parse_s3_url(url: str, expected: tuple[str, str]) -> None:
    assert parse_s3_url(url, option="input_s3_path") == expected


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://bucket/key", "does not start with s3://"),
        ("bucket/key", "does not start with s3://"),
        ("s3://", "bucket name is missing"),
        ("s3:///key", "bucket name is missing"),
        ("s3://AKIAEXAMPLE:hunter2@bucket/key", "bucket name is not valid"),
        ("s3://bad bucket/key", "bucket name is not valid"),
    ],
)
def test_parse_s3_url_rejects_and_never_echoes_the_value(url: str, why: str) -> None:
    with pytest.raises(OptionsError) as info:
        parse_s3_url(url, option="input_s3_path")
    message = str(info.value)
    assert message.startswith("input_s3_path: ")
    assert "s3://bucket/prefix" in message
    assert why in message
    assert "hunter2" not in message and "AKIAEXAMPLE" not in message
    if len(url) > len("s3://"):
        assert url not in message


# --------------------------------------------------------------------------- make_client


def test_make_client_config_and_it_works(s3_server, bucket: str) -> None:  # type: ignore[no-untyped-def]
    settings = TransferSettings(concurrency=24, max_attempts=7, checksum="when_required")
    secret = SecretStr(s3_server.secret_key)
    client = make_client(
        S3Target(s3_server.endpoint_url, SecretStr(s3_server.access_key), secret), settings
    )
    assert client.name == "obstore"  # the default engine
    config = client.boto.meta.config
    assert config.max_pool_connections >= 24
    assert config.retries["mode"] == "standard"
    assert config.retries["total_max_attempts"] == 7  # attempts in all, the first one included
    assert config.request_checksum_calculation == "when_required"
    assert config.response_checksum_validation == "when_required"
    assert config.s3["addressing_style"] == "path"
    assert client.boto.meta.region_name == "us-east-1"
    assert (config.connect_timeout, config.read_timeout) == (10.0, 60.0)
    client.boto.put_object(Bucket=bucket, Key="k", Body=b"v")
    assert client.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "k"}
    ).startswith(f"{s3_server.endpoint_url}/{bucket}/k?")


def test_make_client_needs_both_keys_or_none() -> None:
    with pytest.raises(OptionsError, match="both the access key and the secret key"):
        make_client(S3Target("http://127.0.0.1:1", SecretStr("a"), None), DEFAULT)


def test_storage_import_stays_light() -> None:
    code = (
        "import sys, hook_processor.storage\n"
        "heavy = {'docker', 'moto', 'jinja2', 'boto3'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- stage_in


def test_stage_in_prefix_keeps_relative_paths_byte_exactly(
    client: Any, s3: Any, bucket: str, tmp_path: Path
) -> None:
    objects = {f"in/{name}": name.encode() * 3 for name in ODD_NAMES}
    objects |= {"in/empty.dat": b"", "in/sub/deeper/x.bin": os.urandom(3000)}
    put_objects(s3, bucket, objects | {"in/": b"", "in/sub/": b"", "other/no.txt": b"no"})
    seen = Seen()

    stats = stage_in(client, bucket, "in/", tmp_path / "dest", DEFAULT, progress=seen)

    assert read_tree(tmp_path / "dest") == {k[3:]: v for k, v in objects.items()}
    assert (stats.files, stats.bytes, stats.retries) == (
        len(objects),
        sum(map(len, objects.values())),
        0,
    )
    assert sum(seen) == stats.bytes
    assert seen.totals == (stats.files, stats.bytes) and seen.files_done == stats.files
    assert leftovers(tmp_path) == []


def test_stage_in_folder_without_trailing_slash_is_a_folder(
    client: Any, s3: Any, bucket: str, tmp_path: Path
) -> None:
    # The public demo: s3://bucket/dedl_hello_world/input_file_location, files inside it.
    base = "dedl_hello_world/input_file_location"
    put_objects(
        s3, bucket, {f"{base}/a.txt": b"a", f"{base}/d/b.txt": b"b", f"{base}foo": b"sibling"}
    )
    stage_in(client, bucket, base, tmp_path, DEFAULT)
    assert read_tree(tmp_path) == {"a.txt": b"a", "d/b.txt": b"b"}


def test_stage_in_one_object_lands_as_its_basename(
    client: Any, s3: Any, bucket: str, tmp_path: Path
) -> None:
    put_objects(s3, bucket, {"x/data.csv": b"1,2\n", "x/data.csv.bak": b"old", "x/data.csvz": b"z"})
    stats = stage_in(client, bucket, "x/data.csv", tmp_path, DEFAULT)
    assert read_tree(tmp_path) == {"data.csv": b"1,2\n"}
    assert stats.files == 1


def test_stage_in_whole_bucket_with_empty_prefix(
    client: Any, s3: Any, bucket: str, tmp_path: Path
) -> None:
    put_objects(s3, bucket, {"a": b"1", "d/b": b"2"})
    stage_in(client, bucket, "", tmp_path, DEFAULT)
    assert read_tree(tmp_path) == {"a": b"1", "d/b": b"2"}


@pytest.mark.parametrize("key_or_prefix", ["nothing/", "nothing", "in/only-a-sibli"])
def test_stage_in_nothing_found(
    client: Any, s3: Any, bucket: str, tmp_path: Path, key_or_prefix: str
) -> None:
    put_objects(s3, bucket, {"in/only-a-sibling": b"x", "nothing-here/": b""})
    with pytest.raises(StagingError, match=f"nothing found at s3://{bucket}/{key_or_prefix} "):
        stage_in(client, bucket, key_or_prefix, tmp_path / "dest", DEFAULT)
    assert not (tmp_path / "dest").exists()


@pytest.mark.parametrize(
    ("prefix", "hostile"),
    [
        ("data/", "data/../../escape1.txt"),
        ("data/", "data/sub/../../../escape2.txt"),
        ("data/", "data//abs.txt"),
        ("data/", "data/./dot.txt"),
        ("data/", "data/sub/.."),
        ("data", "data/../escape3.txt"),
        ("", "/etc/abs.txt"),
        ("", "../up.txt"),
    ],
)
def test_stage_in_refuses_hostile_keys_before_writing_anything(
    client: Any, s3: Any, bucket: str, tmp_path: Path, prefix: str, hostile: str
) -> None:
    put_objects(s3, bucket, {"data/good.txt": b"good", hostile: b"evil"})
    dest = tmp_path / "a" / "b" / "dest"
    with pytest.raises(StagingError) as info:
        stage_in(client, bucket, prefix, dest, DEFAULT)
    assert repr(hostile) in str(info.value)
    assert "refusing to stage" in str(info.value)
    assert read_tree(tmp_path) == {}  # not even good.txt, and nothing above dest


def test_stage_in_refuses_a_key_that_is_file_and_folder(
    client: Any, s3: Any, bucket: str, tmp_path: Path
) -> None:
    put_objects(s3, bucket, {"in/a": b"file", "in/a/b": b"inside"})
    with pytest.raises(
        StagingError, match="'in/a' is a file and also the folder of the key 'in/a/b'"
    ):
        stage_in(client, bucket, "in/", tmp_path, DEFAULT)
    assert read_tree(tmp_path) == {}


def test_stage_in_large_object_in_ranges_counts_progress_once(
    client: Any, s3: Any, bucket: str, tmp_path: Path
) -> None:
    big = os.urandom(12 * MiB + 123)
    put_objects(s3, bucket, {"big/blob.bin": big, "big/small.txt": b"s"})
    seen = Seen()

    stats = stage_in(client, bucket, "big", tmp_path, SMALL_PARTS, progress=seen)

    assert (tmp_path / "blob.bin").read_bytes() == big
    assert (tmp_path / "small.txt").read_bytes() == b"s"
    assert sum(seen) == stats.bytes == len(big) + 1
    assert seen.totals == (2, len(big) + 1) and seen.files_done == 2
    assert leftovers(tmp_path) == []


def test_stage_in_cancel_leaves_no_partial_or_temp_file(
    client: Any, s3: Any, bucket: str, tmp_path: Path
) -> None:
    put_objects(s3, bucket, {"c/blob.bin": os.urandom(12 * MiB)})
    cancel = threading.Event()
    with pytest.raises(Cancelled, match="cancelled while staging the input"):
        stage_in(
            client,
            bucket,
            "c/",
            tmp_path,
            SMALL_PARTS,
            cancel=cancel,
            progress=Seen(lambda n: cancel.set()),
        )
    assert list(tmp_path.iterdir()) == []


def test_stage_in_local_failure_is_a_staging_error_and_cleans_up(
    client: Any, s3: Any, bucket: str, tmp_path: Path
) -> None:
    put_objects(s3, bucket, {"l/a.txt": b"a", "l/b.txt": b"b"})
    (tmp_path / "b.txt").mkdir()  # the final name is taken by a folder
    with pytest.raises(
        StagingError, match=r"could not download s3://.*/l/b\.txt to .*b\.txt: Is a directory"
    ):
        stage_in(client, bucket, "l/", tmp_path, TransferSettings(concurrency=1))
    assert leftovers(tmp_path) == []


def test_stage_in_missing_bucket_names_url_and_endpoint(client: Any, tmp_path: Path) -> None:
    with pytest.raises(StagingError) as info:
        stage_in(client, "no-such-bucket-here", "in/", tmp_path, DEFAULT)
    message = str(info.value)
    assert "could not list s3://no-such-bucket-here/in/ at http://127.0.0.1:" in message
    assert "NoSuchBucket" in message


# --------------------------------------------------------------------------- publish_private


def test_publish_private_uploads_then_manifest_last(
    boto3_client: Any, s3: Any, bucket: str, tmp_path: Path
) -> None:
    client = boto3_client
    files = {name: name.encode() * 2 for name in ODD_NAMES} | {"empty": b"", "d/e/f.txt": b"f"}
    write_tree(tmp_path, files)
    (tmp_path / "link.txt").symlink_to(tmp_path / "d" / "e" / "f.txt")  # inside: followed
    (tmp_path / "dlink").symlink_to(tmp_path / "d")  # a folder inside: followed too
    expected = files | {"link.txt": b"f", "dlink/e/f.txt": b"f"}
    order: list[str] = []
    client.boto.meta.events.register(
        "provide-client-params.s3.PutObject", lambda params, **_: order.append(params["Key"])
    )
    puts = record_calls(client, "PutObject")

    out = publish_private(
        client, bucket, "run/1/", tmp_path, DEFAULT, manifest_extra={"order_id": "42"}
    )

    assert isinstance(out, PublishOutcome)
    assert {
        k[6:]: get(s3, bucket, k) for k in keys(s3, bucket) if k != "run/1/_manifest.json"
    } == expected
    assert order[-1] == "run/1/_manifest.json" and order.count("run/1/_manifest.json") == 1
    assert puts[-1]["IfNoneMatch"] == "*"
    manifest = json.loads(get(s3, bucket, "run/1/_manifest.json"))
    assert manifest["order_id"] == "42" and manifest["hook_processor_version"]
    assert manifest["created"].endswith("Z")
    assert manifest["files"] == [
        {"key": f"run/1/{rel}", "size": len(body), "sha256": hashlib.sha256(body).hexdigest()}
        for rel, body in sorted(expected.items())
    ]
    assert out.manifest == f"s3://{bucket}/run/1/_manifest.json"
    assert [(p.name, p.size, p.location) for p in out.products] == [
        (rel, len(body), f"s3://{bucket}/run/1/{rel}") for rel, body in sorted(expected.items())
    ]
    assert out.stats.files == len(expected)


def test_publish_private_empty_prefix_and_empty_folder(
    client: Any, s3: Any, bucket: str, tmp_path: Path
) -> None:
    out = publish_private(client, bucket, "", tmp_path, DEFAULT, manifest_extra={})
    assert keys(s3, bucket) == [MANIFEST_NAME]
    assert json.loads(get(s3, bucket, MANIFEST_NAME))["files"] == []
    assert out.products == [] and out.manifest == f"s3://{bucket}/_manifest.json"


def test_publish_private_multipart(client: Any, s3: Any, bucket: str, tmp_path: Path) -> None:
    big = os.urandom(12 * MiB + 5)
    write_tree(tmp_path, {"big.bin": big, "small.txt": b"s"})
    seen = Seen()
    out = publish_private(
        client, bucket, "mp", tmp_path, SMALL_PARTS, manifest_extra={}, progress=seen
    )
    assert get(s3, bucket, "mp/big.bin") == big
    assert s3.head_object(Bucket=bucket, Key="mp/big.bin")["ETag"].endswith('-3"')
    assert out.products[0].sha256 == hashlib.sha256(big).hexdigest()
    assert sum(seen) == len(big) + 1
    assert seen.totals == (2, len(big) + 1) and seen.files_done == 2
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_publish_private_refuses_a_prefix_with_a_manifest(
    client: Any, s3: Any, bucket: str, tmp_path: Path
) -> None:
    write_tree(tmp_path, {"new.txt": b"new"})
    put_objects(s3, bucket, {"out/_manifest.json": b"{}", "out/old.txt": b"old"})
    with pytest.raises(PublishError) as info:
        publish_private(client, bucket, "out", tmp_path, DEFAULT, manifest_extra={})
    assert f"s3://{bucket}/out/_manifest.json already exists" in str(info.value)
    assert "choose another s3_prefix" in str(info.value)
    assert keys(s3, bucket) == ["out/_manifest.json", "out/old.txt"]


def test_publish_private_refuses_its_reserved_name(
    client: Any, s3: Any, bucket: str, tmp_path: Path
) -> None:
    write_tree(tmp_path, {MANIFEST_NAME: b"{}"})
    with pytest.raises(
        PublishError, match="contains _manifest.json, a name hook-processor reserves"
    ):
        publish_private(client, bucket, "out", tmp_path, DEFAULT, manifest_extra={})
    assert keys(s3, bucket) == []


def _link_out(src: Path, outside: Path) -> None:
    outside.write_text("secret")
    (src / "out.txt").symlink_to(outside)


def _link_dangling(src: Path, outside: Path) -> None:
    (src / "out.txt").symlink_to(src / "missing")


def _link_loop(src: Path, outside: Path) -> None:
    (src / "d").mkdir()
    (src / "d" / "out.txt").symlink_to(src / "d")


def _link_self(src: Path, outside: Path) -> None:
    (src / "out.txt").symlink_to(src / "out.txt")


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (_link_out, "is a symbolic link to .*outside the output folder"),
        (_link_dangling, "is a symbolic link that dangles or loops"),
        (_link_self, "is a symbolic link that dangles or loops"),
        (_link_loop, "is a symbolic link to its own parent folder"),
    ],
)
@pytest.mark.parametrize("temporary", [False, True])
def test_publish_refuses_bad_links(
    client: Any, s3: Any, bucket: str, tmp_path: Path, make: Any, why: str, temporary: bool
) -> None:
    src = tmp_path / "src"
    write_tree(src, {"a.txt": b"a"})
    make(src, tmp_path / "outside.txt")
    with pytest.raises(PublishError, match=f"refusing to publish {src}/.*out.txt: it {why}"):
        if temporary:
            publish_temporary(client, bucket, "t/out.zip", src, DEFAULT)
        else:
            publish_private(client, bucket, "out", src, DEFAULT, manifest_extra={})
    assert keys(s3, bucket) == []


def test_publish_refuses_a_name_that_is_not_utf8(
    client: Any, s3: Any, bucket: str, tmp_path: Path
) -> None:
    (tmp_path / os.fsdecode(b"bad\xff.txt")).write_bytes(b"x")
    with pytest.raises(PublishError, match="is not valid UTF-8"):
        publish_private(client, bucket, "out", tmp_path, DEFAULT, manifest_extra={})


def test_publish_private_failure_writes_no_manifest(
    client: Any, s3: Any, bucket: str, tmp_path: Path
) -> None:
    write_tree(tmp_path, {"a.txt": b"a", "b.txt": b"b"})

    def remove_b(_: int) -> None:  # a.txt is uploaded first (one worker): b.txt disappears
        (tmp_path / "b.txt").unlink(missing_ok=True)

    settings = TransferSettings(concurrency=1)
    with pytest.raises(
        PublishError, match=r"could not upload .*b\.txt to s3://.*/out/b\.txt: No such file"
    ):
        publish_private(
            client, bucket, "out", tmp_path, settings, manifest_extra={}, progress=Seen(remove_b)
        )
    assert "out/_manifest.json" not in keys(s3, bucket)


def test_publish_private_cancel_aborts_multipart_and_writes_no_manifest(
    client: Any, s3: Any, bucket: str, tmp_path: Path
) -> None:
    write_tree(tmp_path, {"big.bin": os.urandom(16 * MiB)})
    cancel = threading.Event()
    with pytest.raises(Cancelled, match="cancelled while publishing the output"):
        publish_private(
            client,
            bucket,
            "c",
            tmp_path,
            SMALL_PARTS,
            manifest_extra={},
            cancel=cancel,
            progress=Seen(lambda n: cancel.set()),
        )
    assert keys(s3, bucket) == []
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_publish_private_cancel_before_start_uploads_nothing(
    client: Any, s3: Any, bucket: str, tmp_path: Path
) -> None:
    write_tree(tmp_path, {"a.txt": b"a"})
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        publish_private(client, bucket, "c", tmp_path, DEFAULT, manifest_extra={}, cancel=cancel)
    assert keys(s3, bucket) == []


# --------------------------------------------------------------------------- publish_temporary


def test_publish_temporary_zip_via_presigned_link(
    client: Any, s3: Any, bucket: str, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    files = {name: name.encode() * 100 for name in ODD_NAMES} | {"empty": b"", "d/x.txt": b"x"}
    write_tree(src, files)
    (src / "d" / "link.txt").symlink_to(src / "empty")
    seen = Seen()

    out = publish_temporary(
        client,
        bucket,
        "tmp/order-7/result.zip",
        src,
        DEFAULT,
        expires_in=3600,
        progress=seen,
    )

    (product,) = out.products
    assert (
        product.name == "result.zip" and product.location == f"s3://{bucket}/tmp/order-7/result.zip"
    )
    assert product.download_link and product.download_link.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(product.download_link, timeout=10) as response:  # noqa: S310
        data = response.read()
    assert len(data) == product.size == out.stats.bytes
    # Progress counts the files' bytes as they go into the zip (a link's target once more).
    content = sum(map(len, files.values())) + len(files["empty"])
    assert seen.totals == (len(files) + 1, content) and sum(seen) == content
    assert seen.files_done == len(files) + 1
    assert product.sha256 == hashlib.sha256(data).hexdigest()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        assert {i.filename: archive.read(i) for i in archive.infolist()} == files | {
            "d/link.txt": b""
        }
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in archive.infolist())
    assert not list(tmp_path.glob("**/*.zip"))


def test_publish_temporary_streams_a_large_zip_as_multipart(
    boto3_client: Any, s3: Any, bucket: str, tmp_path: Path
) -> None:
    client = boto3_client
    files = {"noise.bin": os.urandom(11 * MiB), "more/noise2.bin": os.urandom(2 * MiB)}
    write_tree(tmp_path, files)
    parts = record_calls(client, "UploadPart")
    out = publish_temporary(client, bucket, "z.zip", tmp_path, SMALL_PARTS)
    assert sorted(p["PartNumber"] for p in parts) == [1, 2, 3]
    assert s3.head_object(Bucket=bucket, Key="z.zip")["ETag"].endswith('-3"')
    with zipfile.ZipFile(io.BytesIO(get(s3, bucket, "z.zip"))) as archive:
        assert {n: archive.read(n) for n in archive.namelist()} == files
    assert out.products[0].size == s3.head_object(Bucket=bucket, Key="z.zip")["ContentLength"]


def test_publish_temporary_stores_compressed_formats_and_deflates_the_rest(
    client: Any, s3: Any, bucket: str, tmp_path: Path
) -> None:
    text = b"a line that deflates very well\n" * 4000
    stored = ["B04.jp2", "tiles/scene.TIF", "cube.nc", "logs.tar.gz", "quick.jpeg", "x.zst"]
    deflated = ["meta.xml", "notes.txt", "plain.h5", "no_suffix", "tif.bak"]
    files = {name: text for name in stored + deflated}
    files["big.tiff"] = os.urandom(6 * MiB)  # the zip goes up in parts (SMALL_PARTS)
    write_tree(tmp_path / "src", files)

    out = publish_temporary(client, bucket, "c.zip", tmp_path / "src", SMALL_PARTS)

    data = get(s3, bucket, "c.zip")
    assert out.products[0].size == len(data)
    assert s3.head_object(Bucket=bucket, Key="c.zip")["ETag"].endswith('-2"')  # two parts
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        assert {i.filename: archive.read(i) for i in archive.infolist()} == files
        kinds = {i.filename: i.compress_type for i in archive.infolist()}
        sizes = {i.filename: (i.compress_size, i.file_size) for i in archive.infolist()}
    assert kinds == {n: zipfile.ZIP_STORED for n in [*stored, "big.tiff"]} | {
        n: zipfile.ZIP_DEFLATED for n in deflated
    }
    assert all(sizes[n][0] == sizes[n][1] for n in stored)  # as they are, byte for byte
    assert all(sizes[n][0] < sizes[n][1] // 10 for n in deflated)


def test_publish_temporary_empty_folder_is_an_empty_zip(
    client: Any, s3: Any, bucket: str, tmp_path: Path
) -> None:
    publish_temporary(client, bucket, "e.zip", tmp_path, DEFAULT)
    with zipfile.ZipFile(io.BytesIO(get(s3, bucket, "e.zip"))) as archive:
        assert archive.namelist() == []


def test_publish_temporary_cancel_aborts_the_upload(
    client: Any, s3: Any, bucket: str, tmp_path: Path
) -> None:
    write_tree(tmp_path, {"a.bin": os.urandom(12 * MiB)})
    cancel = threading.Event()
    with pytest.raises(Cancelled):
        publish_temporary(
            client,
            bucket,
            "c.zip",
            tmp_path,
            SMALL_PARTS,
            cancel=cancel,
            progress=Seen(lambda n: cancel.set()),
        )
    assert keys(s3, bucket) == []
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_publish_temporary_s3_failure_is_a_publish_error(client: Any, tmp_path: Path) -> None:
    write_tree(tmp_path, {"a.txt": b"a"})
    with pytest.raises(
        PublishError,
        match="could not upload the zip to s3://no-such-bucket-zz/x.zip at http://127.0.0.1:.*NoSuchBucket",
    ):
        publish_temporary(client, "no-such-bucket-zz", "x.zip", tmp_path, DEFAULT)
