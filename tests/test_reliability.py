"""The reliability and security matrix (issue 6): every case a test that asserts the behaviour.

Run outcomes go through :func:`hook_processor.runtime.run` (or the ``hook-processor exec``
subprocess when a signal is involved) with ``tests/fault_proxy.py`` in front of the session's moto
server; what the proxy and the storage tests already prove is not repeated here:

* the proxy's own faults: ``test_fault_proxy.py``;
* storage-level details: cancel and local failures, hostile keys and link refusal at the
  storage API (``test_storage.py``); If-Match pinning, an object replaced mid-download,
  pagination over 1,000 keys, broken bodies and 503 bursts on every engine
  (``test_s3_invariants.py``);
* SIGTERM during process() and the basic secret checks of a successful run (``test_runtime.py``).

Everything listens on 127.0.0.1. Time is only ever bounded from above, generously.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import signal
import socket
import subprocess
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from exec_helpers import exec_command

from hook_processor import runtime
from hook_processor.errors import ExitCode
from hook_processor.options import OptionSources
from hook_processor.result import RunResult
from hook_processor.storage import MANIFEST_NAME

try:
    from fault_proxy import FaultProxy, Rule
except ImportError:  # tests/ became a package
    from tests.fault_proxy import FaultProxy, Rule  # type: ignore[no-redef]

REPO_ROOT = Path(__file__).resolve().parent.parent
HELLO_WORLD = REPO_ROOT / "examples" / "hello_world"
HELLO_PREFIX = "dedl_hello_world/input_file_location/"
MiB = 1024 * 1024
TEMP_MARKS = (".hookpart-", ".result-")  # stage-in temporaries, result temporaries

COPY_PROCESSOR = """
    import shutil

    def process(input_dir, output_dir):
        shutil.copytree(input_dir, output_dir, dirs_exist_ok=True)
"""


# Every selectable data-plane engine runs the whole matrix: each run of a test is made with the
# engine of its parameter (HOOK_S3_ENGINE in order_env, TransferSettings.engine elsewhere).
ENGINES = ["lean", "boto3", "obstore"]
_engine = {"name": "auto"}

# --------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True, params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Iterator[str]:
    _engine["name"] = request.param
    yield request.param
    _engine["name"] = "auto"


@pytest.fixture(scope="module")
def s3(s3_server):  # type: ignore[no-untyped-def]
    """Overrides conftest's per-test client: creating a boto3 client costs ~0.3 s."""
    return s3_server.client()


@pytest.fixture
def buckets(s3) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    names = (f"in-{uuid.uuid4().hex[:10]}", f"out-{uuid.uuid4().hex[:10]}")
    for name in names:
        s3.create_bucket(Bucket=name)
    return names


@pytest.fixture
def proxy(s3_server) -> Iterator[FaultProxy]:  # type: ignore[no-untyped-def]
    with FaultProxy(upstream=s3_server.endpoint_url) as p:
        yield p


def order_env(
    server: Any,
    work: Path,
    *,
    source: str,
    output: str,
    input_endpoint: str | None = None,
    output_endpoint: str | None = None,
    **extra: str,
) -> dict[str, str]:
    """A PRIVATE order as environment variables (the live service's option names)."""
    return {
        "SOURCE_S3_ENDPOINT_URL": input_endpoint or server.endpoint_url,
        "SOURCE_S3_PATH": source,
        "SOURCE_S3_ACCESS_KEY": server.access_key,
        "SOURCE_S3_SECRET_KEY": server.secret_key,
        "OUTPUT_STORAGE": "PRIVATE",
        "OUTPUT_S3_ENDPOINT_URL": output_endpoint or server.endpoint_url,
        "OUTPUT_S3_PATH": output,
        "OUTPUT_S3_ACCESS_KEY": server.access_key,
        "OUTPUT_S3_SECRET_KEY": server.secret_key,
        "HOOK_WORK_DIR": str(work),
        "HOOK_S3_ENGINE": _engine["name"],
        **extra,
    }


def write_project(root: Path, body: str, name: str = "proj") -> Path:
    """A project whose module has a unique name (the loader imports it), ``body`` its process()."""
    project = root / name
    project.mkdir(parents=True)
    module = f"proc_{uuid.uuid4().hex[:8]}"
    (project / f"{module}.py").write_text(textwrap.dedent(body))
    (project / "pyproject.toml").write_text(
        f'[tool.hook-processor]\nname = "reliability"\nentrypoint = "{module}:process"\n'
    )
    return project


def run(env: dict[str, str], project: Path = HELLO_WORLD) -> RunResult:
    return runtime.run(OptionSources(env=env), project_dir=project)


def put_objects(s3: Any, bucket: str, objects: dict[str, bytes], threads: int = 1) -> None:
    def put(item: tuple[str, bytes]) -> None:
        s3.put_object(Bucket=bucket, Key=item[0], Body=item[1])

    if threads == 1:
        for item in objects.items():
            put(item)
        return
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        list(pool.map(put, objects.items()))


def listing(s3: Any, bucket: str, prefix: str = "") -> dict[str, dict[str, Any]]:
    """{key: listing entry} of every object under ``prefix`` (all pages)."""
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {o["Key"]: o for page in pages for o in page.get("Contents", ())}


def get(s3: Any, bucket: str, key: str) -> bytes:
    return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def tree(root: Path) -> dict[str, bytes]:
    """{relative posix path: bytes} of the regular files under ``root``."""
    if not root.exists():
        return {}
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def temp_leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if any(mark in p.name for mark in TEMP_MARKS)]


def payload(n: int, salt: str) -> bytes:
    """``n`` bytes that differ everywhere a flipped or dropped byte could hide."""
    block = hashlib.sha256(salt.encode()).digest() + bytes(range(256))
    return (block * (n // len(block) + 1))[:n]


def error_lines(err: str) -> list[str]:
    """The ERROR records of a text log (continuation lines of a record are not counted)."""
    return [line for line in err.splitlines() if " ERROR " in line]


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- transient faults


def test_503_and_500_on_a_share_of_gets_and_puts_are_retried_and_counted(
    s3_server, s3, buckets, proxy, tmp_path, capsys
) -> None:
    in_bucket, out_bucket = buckets
    files = {f"f{i}.txt": f"file {i}\n".encode() for i in range(8)}
    put_objects(s3, in_bucket, {HELLO_PREFIX + k: v for k, v in files.items()})
    # A share of the requests, never more than 3 in a row for one request (5 attempts allowed);
    # the seeds make the first draws fire, whatever thread gets them.
    proxy.add_rule(
        Rule(fault="status", status=503, code="SlowDown", methods="GET", rate=0.3, count=3, seed=4)
    )
    proxy.add_rule(
        Rule(
            fault="status",
            status=500,
            code="InternalError",
            methods="PUT",
            rate=0.3,
            count=3,
            seed=1,
        )
    )
    env = order_env(
        s3_server,
        tmp_path / "work",
        source=f"s3://{in_bucket}/{HELLO_PREFIX}",
        output=f"s3://{out_bucket}/run",
        input_endpoint=proxy.endpoint_url,
        output_endpoint=proxy.endpoint_url,
    )

    result = run(env)

    assert result.exit_code == ExitCode.COMPLETED, result.status_message
    events = proxy.events
    assert {e.method for e in events} == {"GET", "PUT"}
    # Every injected fault cost exactly one retry, and the result says how many.
    assert result.retries == len(events) > 0
    assert json.loads((tmp_path / "work" / "result.json").read_text())["Retries"] == len(events)
    published = {k: get(s3, out_bucket, k) for k in listing(s3, out_bucket, "run/")}
    assert published.pop(f"run/{MANIFEST_NAME}")
    assert published == {f"run/{k}": v.upper() for k, v in files.items()}
    assert error_lines(capsys.readouterr().err) == []


BODY_FAULTS = {
    "reset_mid_body": dict(fault="reset_after", after_bytes=100_000),
    "short_body": dict(fault="short_body", short_by=1000),
    "flipped_byte": dict(fault="flip_byte", offset=123_456),
}


@pytest.mark.parametrize("fault", list(BODY_FAULTS))
def test_broken_get_body_is_detected_and_retried(
    s3_server, s3, buckets, proxy, tmp_path, fault
) -> None:
    in_bucket, out_bucket = buckets
    blob, small = payload(300_000, fault), b"small\n"
    # Uploaded with boto3's default CRC32, which the server stores: a flipped byte is caught by
    # the response checksum (a reset or short body by the length).
    put_objects(s3, in_bucket, {"in/blob.bin": blob, "in/small.txt": small})
    proxy.add_rule(
        Rule(**BODY_FAULTS[fault], methods="GET", key_pattern=r"/in/blob\.bin$", count=1)
    )
    env = order_env(
        s3_server,
        tmp_path / "work",
        source=f"s3://{in_bucket}/in/",
        output=f"s3://{out_bucket}/run",
        input_endpoint=proxy.endpoint_url,
    )

    result = run(env, write_project(tmp_path, COPY_PROCESSOR))

    assert result.exit_code == ExitCode.COMPLETED, result.status_message
    assert [e.rule for e in proxy.events] == [BODY_FAULTS[fault]["fault"]]
    assert result.retries >= 1
    assert get(s3, out_bucket, "run/blob.bin") == blob  # the corrupt copy was never kept
    assert get(s3, out_bucket, "run/small.txt") == small


@pytest.mark.parametrize("fault", list(BODY_FAULTS))
def test_broken_get_body_when_retries_run_out_is_exit_3_without_partial_or_temp_files(
    s3_server, s3, buckets, proxy, tmp_path, fault
) -> None:
    in_bucket, out_bucket = buckets
    put_objects(s3, in_bucket, {"in/blob.bin": payload(300_000, fault), "in/ok.txt": b"ok"})
    proxy.add_rule(Rule(**BODY_FAULTS[fault], methods="GET", key_pattern=r"/in/blob\.bin$"))
    work = tmp_path / "work"
    env = order_env(
        s3_server,
        work,
        source=f"s3://{in_bucket}/in/",
        output=f"s3://{out_bucket}/run",
        input_endpoint=proxy.endpoint_url,
        HOOK_S3_MAX_ATTEMPTS="2",
    )

    result = run(env, write_project(tmp_path, COPY_PROCESSOR))

    assert result.exit_code == ExitCode.STAGING_FAILED
    assert f"s3://{in_bucket}/in/blob.bin" in result.status_message
    assert len(proxy.events) == 2  # both attempts were made, both were broken
    assert "blob.bin" not in tree(work / "input")  # nothing under its final name
    assert temp_leftovers(work) == []
    assert listing(s3, out_bucket) == {}  # process() and publish never ran


def test_flipped_byte_in_a_ranged_get_of_a_large_object_is_never_kept(
    s3_server, s3, buckets, proxy, tmp_path
) -> None:
    # Ranged GETs carry no checksum; the assembled file is checked against the object's stored
    # full-object CRC32 before it is renamed into place. Not retried (it would mean fetching
    # the whole object again): the run fails cleanly and a rerun starts over.
    in_bucket, out_bucket = buckets
    big = payload(11 * MiB, "ranged")  # > 2 x HOOK_PART_SIZE_MB=5: three ranged GETs
    put_objects(s3, in_bucket, {"in/big.bin": big, "in/ok.txt": b"ok"})
    proxy.add_rule(
        Rule(fault="flip_byte", offset=4321, methods="GET", key_pattern=r"/in/big\.bin$", count=1)
    )
    work = tmp_path / "work"
    env = order_env(
        s3_server,
        work,
        source=f"s3://{in_bucket}/in/",
        output=f"s3://{out_bucket}/run",
        input_endpoint=proxy.endpoint_url,
        HOOK_PART_SIZE_MB="5",
    )
    project = write_project(tmp_path, COPY_PROCESSOR)

    result = run(env, project)

    assert result.exit_code == ExitCode.STAGING_FAILED
    assert [e.rule for e in proxy.events] == ["flip_byte"]
    assert f"s3://{in_bucket}/in/big.bin" in result.status_message
    assert "do not match the object's stored CRC32 checksum" in result.status_message
    assert "big.bin" not in tree(work / "input")
    assert temp_leftovers(work) == []
    assert listing(s3, out_bucket) == {}

    rerun = run(env, project)  # the fault was transient: the same order now completes

    assert rerun.exit_code == ExitCode.COMPLETED, rerun.status_message
    assert get(s3, out_bucket, "run/big.bin") == big


@pytest.mark.parametrize("how", ["refusing", "down"])
def test_unreachable_endpoint_fails_in_bounded_time_with_one_message(
    s3_server, proxy, tmp_path, capsys, how
) -> None:
    if how == "refusing":  # nothing listens: connection refused
        endpoint = f"http://127.0.0.1:{free_port()}"
    else:  # a listener that resets every connection once it has read the request
        proxy.add_rule(Rule(fault="down"))
        endpoint = proxy.endpoint_url
    env = order_env(
        s3_server,
        tmp_path / "work",
        source="s3://in-bucket/in/",
        output="s3://out-bucket/run",
        input_endpoint=endpoint,
        output_endpoint=endpoint,
    )  # default HOOK_S3_MAX_ATTEMPTS (5)

    began = time.monotonic()
    result = run(env)
    elapsed = time.monotonic() - began

    assert result.exit_code == ExitCode.STAGING_FAILED
    assert elapsed < 60, f"took {elapsed:.1f} s"
    assert endpoint in result.status_message
    assert "\n" not in result.status_message
    errors = error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and endpoint in errors[0]
    if how == "down":
        assert len(proxy.events) == 5  # every attempt went out: retried, then given up


# --------------------------------------------------------------------------- stop and restart


BIG = 12 * MiB  # with HOOK_PART_SIZE_MB=5: a 3-part multipart upload (5 + 5 + 2 MiB)

PUBLISHER = f"""
    import hashlib

    def process(input_dir, output_dir):
        for name in ("a.txt", "b.txt", "c.txt"):
            (output_dir / name).write_text(name * 100)
        block = hashlib.sha256(b"big").digest() * 32
        (output_dir / "big.bin").write_bytes(block * ({BIG} // len(block)))
"""


def expected_outputs() -> dict[str, bytes]:
    block = hashlib.sha256(b"big").digest() * 32
    out = {name: (name * 100).encode() for name in ("a.txt", "b.txt", "c.txt")}
    out["big.bin"] = block * (BIG // len(block))
    return out


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "crash"])
def test_stopped_mid_publish_leaves_no_manifest_and_a_rerun_publishes_one_correct_set(
    s3_server, s3, buckets, proxy, tmp_path, sig
) -> None:
    in_bucket, out_bucket = buckets
    put_objects(s3, in_bucket, {"in/order.txt": b"order"})
    project = write_project(tmp_path, PUBLISHER)
    # Parts of the big file crawl; the small files go straight through.
    proxy.add_rule(Rule(fault="latency", delay=2.0, methods="PUT", query="uploadId"))
    env = order_env(
        s3_server,
        tmp_path / "work",
        source=f"s3://{in_bucket}/in/",
        output=f"s3://{out_bucket}/run",
        output_endpoint=proxy.endpoint_url,
        HOOK_PART_SIZE_MB="5",
    )
    child = exec_command(env, "--project", str(project))
    try:

        def some_uploaded() -> bool:
            parts = any(m == "PUT" and "uploadId" in t for m, t in proxy.requests)
            small = any(k.endswith(".txt") for k in listing(s3, out_bucket, "run/"))
            return parts and small

        wait_for(some_uploaded, 30, "small files uploaded and a part in flight")
        child.send_signal(sig)
        _, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    published = listing(s3, out_bucket, "run/")
    assert f"run/{MANIFEST_NAME}" not in published
    assert "run/big.bin" not in published
    if sig == signal.SIGTERM:
        assert child.returncode == ExitCode.CANCELLED, err
        assert "cancelled" in err
        assert json.loads((tmp_path / "work" / "result.json").read_text())["Status"] == "cancelled"
        # The process aborted its multipart upload on the way out.
        assert s3.list_multipart_uploads(Bucket=out_bucket).get("Uploads", []) == []
    else:
        # SIGKILL runs no code: the upload it started is left for the bucket's
        # AbortIncompleteMultipartUpload lifecycle rule (it never becomes an object).
        assert child.returncode == -signal.SIGKILL

    proxy.clear_rules()
    rerun = run(env, project)  # the same order, the same work dir

    assert rerun.exit_code == ExitCode.COMPLETED, rerun.status_message
    expected = {f"run/{k}": v for k, v in expected_outputs().items()}
    published = listing(s3, out_bucket, "run/")
    assert set(published) == {*expected, f"run/{MANIFEST_NAME}"}
    assert {k: get(s3, out_bucket, k) for k in expected} == expected
    manifest = json.loads(get(s3, out_bucket, f"run/{MANIFEST_NAME}"))
    assert {f["key"]: f["size"] for f in manifest["files"]} == {
        k: len(v) for k, v in expected.items()
    }
    assert all(
        f["sha256"] == hashlib.sha256(expected[f["key"]]).hexdigest() for f in manifest["files"]
    )


def test_existing_manifest_at_the_output_prefix_is_refused_and_nothing_uploaded(
    s3_server, s3, buckets, tmp_path
) -> None:
    in_bucket, out_bucket = buckets
    put_objects(s3, in_bucket, {HELLO_PREFIX + "example.data": b"new run\n"})
    earlier = b'{"files": [], "note": "an earlier run"}'
    put_objects(s3, out_bucket, {f"run/{MANIFEST_NAME}": earlier})
    env = order_env(
        s3_server,
        tmp_path / "work",
        source=f"s3://{in_bucket}/{HELLO_PREFIX}",
        output=f"s3://{out_bucket}/run",
    )

    result = run(env)

    assert result.exit_code == ExitCode.PUBLISH_FAILED
    assert f"s3://{out_bucket}/run/{MANIFEST_NAME} already exists" in result.status_message
    assert list(listing(s3, out_bucket)) == [f"run/{MANIFEST_NAME}"]  # nothing uploaded
    assert get(s3, out_bucket, f"run/{MANIFEST_NAME}") == earlier  # nothing replaced


# --------------------------------------------------------------------------- hostile input keys


@pytest.mark.parametrize(
    ("prefix", "keys", "named"),
    [
        ("in/", ["in/../escape.txt"], "in/../escape.txt"),
        ("in/", ["in/a/../../escape.txt"], "in/a/../../escape.txt"),
        ("in/", ["in//abs.txt"], "in//abs.txt"),  # leading "/" once the prefix is cut
        ("", ["/abs.txt"], "/abs.txt"),  # leading "/" in the bucket itself
        ("in/", ["in/a//b.txt"], "in/a//b.txt"),
        ("in/", ["in/a/./b.txt"], "in/a/./b.txt"),
        ("in/", ["in/a", "in/a/b.txt"], "in/a"),  # a file and a folder at once
    ],
    ids=[
        "dotdot",
        "dotdot-deep",
        "leading-slash",
        "bucket-leading-slash",
        "double-slash",
        "dot",
        "file-and-folder",
    ],
)
def test_hostile_keys_are_refused_before_anything_is_written(
    s3_server, s3, buckets, tmp_path, prefix, keys, named
) -> None:
    in_bucket, out_bucket = buckets
    put_objects(s3, in_bucket, {f"{prefix}good.txt": b"good", **{k: b"hostile" for k in keys}})
    assert set(keys) <= set(listing(s3, in_bucket))  # the server kept them verbatim
    work = tmp_path / "deep" / "work"
    env = order_env(
        s3_server, work, source=f"s3://{in_bucket}/{prefix}", output=f"s3://{out_bucket}/run"
    )

    result = run(env, write_project(tmp_path, COPY_PROCESSOR))

    assert result.exit_code == ExitCode.STAGING_FAILED
    assert repr(named) in result.status_message  # loud, naming the key: never dropped silently
    assert tree(work / "input") == {}  # refused before the first download
    written = {p for p in tmp_path.rglob("*") if p.is_file() and "proj" not in p.parts}
    # nothing anywhere else, inside the work dir or outside it
    assert written == {work / "result.json", work / ".hook-processor-workdir"}
    assert listing(s3, out_bucket) == {}


def test_folder_markers_are_skipped_and_a_marker_with_data_is_refused(
    s3_server, s3, buckets, tmp_path
) -> None:
    in_bucket, out_bucket = buckets
    # What the S3 console and many tools create: empty keys ending in "/".
    put_objects(s3, in_bucket, {"in/": b"", "in/sub/": b"", "in/sub/x.txt": b"x", "in/empty/": b""})
    project = write_project(tmp_path, COPY_PROCESSOR)
    env = order_env(
        s3_server, tmp_path / "w1", source=f"s3://{in_bucket}/in/", output=f"s3://{out_bucket}/run"
    )

    result = run(env, project)

    assert result.exit_code == ExitCode.COMPLETED, result.status_message
    assert result.input_files == 1
    assert tree(tmp_path / "w1" / "input") == {"sub/x.txt": b"x"}
    assert set(listing(s3, out_bucket)) == {"run/sub/x.txt", f"run/{MANIFEST_NAME}"}

    # A "marker" that holds bytes cannot be a local file: refused, not silently dropped.
    put_objects(s3, in_bucket, {"in/data/": b"not empty"})
    env = order_env(
        s3_server, tmp_path / "w2", source=f"s3://{in_bucket}/in/", output=f"s3://{out_bucket}/run2"
    )
    result = run(env, project)
    assert result.exit_code == ExitCode.STAGING_FAILED
    assert "'in/data/'" in result.status_message and "9 bytes" in result.status_message
    assert tree(tmp_path / "w2" / "input") == {}


# --------------------------------------------------------------------------- round trip


ODD_NAMES = {
    "naïve café/résumé.txt": "grüße, 日本\n".encode(),
    "with space/a b.txt": b"spaces",
    "plus+sign/1+1=2.txt": b"plus",
    "100%/pct %41 %2F.txt": b"percent",
    "日本/データ.bin": bytes(range(256)),
    'quote\'s/"dq".txt': b"quotes",
    "tilde~/semi;colon,comma.txt": b"punct",
    "empty.txt": b"",
    "zero/zero-byte.bin": b"",
}


def test_1001_keys_odd_names_and_empty_objects_round_trip_byte_exact(
    s3_server, s3, buckets, tmp_path
) -> None:
    # Real pagination by the server's own 1,000-key page (test_storage.py covers the loop with a
    # 7-key page); one run of ~10 s, the only large one. Both sides are compared by the MD5
    # ETags of single-part PUTs, and the odd names by their bytes.
    in_bucket, out_bucket = buckets
    bulk = {f"bulk/{i:04d}.txt": f"{i}\n".encode() * (i % 7) for i in range(1001 - len(ODD_NAMES))}
    objects = {**bulk, **ODD_NAMES}
    assert len(objects) == 1001
    put_objects(s3, in_bucket, {f"in/{k}": v for k, v in objects.items()}, threads=16)
    assert s3.list_objects_v2(Bucket=in_bucket, Prefix="in/")["IsTruncated"]
    env = order_env(
        s3_server,
        tmp_path / "work",
        source=f"s3://{in_bucket}/in/",
        output=f"s3://{out_bucket}/run",
        HOOK_CONCURRENCY="32",
    )

    result = run(env, write_project(tmp_path, COPY_PROCESSOR))

    assert result.exit_code == ExitCode.COMPLETED, result.status_message
    assert (result.input_files, result.output_files) == (1001, 1001)
    assert result.input_bytes == result.output_bytes == sum(map(len, objects.values()))
    sent = {k[len("in/") :]: (o["ETag"], o["Size"]) for k, o in listing(s3, in_bucket).items()}
    got = {k[len("run/") :]: (o["ETag"], o["Size"]) for k, o in listing(s3, out_bucket).items()}
    assert got.pop(MANIFEST_NAME)
    assert got == sent
    assert {n: get(s3, out_bucket, f"run/{n}") for n in ODD_NAMES} == ODD_NAMES
    manifest = json.loads(get(s3, out_bucket, f"run/{MANIFEST_NAME}"))
    assert {f["key"][len("run/") :] for f in manifest["files"]} == set(objects)


# --------------------------------------------------------------------------- symbolic links


LINKS = {
    "outward-file": 'os.symlink(OUTSIDE / "secret.txt", output_dir / "link.txt")',
    "outward-folder": 'os.symlink(OUTSIDE, output_dir / "linkdir")',
    "loop-to-parent": 'os.makedirs(output_dir / "d"); os.symlink("..", output_dir / "d" / "up")',
    "cycle": 'os.symlink("b", output_dir / "a"); os.symlink("a", output_dir / "b")',
}


@pytest.mark.parametrize("case", list(LINKS))
def test_links_out_of_output_dir_and_loops_are_refused_without_hanging(
    s3_server, s3, buckets, tmp_path, case
) -> None:
    in_bucket, out_bucket = buckets
    put_objects(s3, in_bucket, {"in/x.txt": b"x"})
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("must not be published")
    project = write_project(
        tmp_path,
        f"""
        import os
        from pathlib import Path

        OUTSIDE = Path({str(outside)!r})

        def process(input_dir, output_dir):
            (output_dir / "ok.txt").write_text("ok")
            {LINKS[case]}
    """,
    )
    env = order_env(
        s3_server,
        tmp_path / "work",
        source=f"s3://{in_bucket}/in/",
        output=f"s3://{out_bucket}/run",
    )
    box: list[RunResult] = []
    worker = threading.Thread(target=lambda: box.append(run(env, project)), daemon=True)

    worker.start()
    worker.join(timeout=60)

    assert not worker.is_alive(), "the run hung on a link"
    result = box[0]
    assert result.exit_code == ExitCode.PUBLISH_FAILED
    assert "refusing to publish" in result.status_message
    assert "symbolic link" in result.status_message
    assert listing(s3, out_bucket) == {}  # refused before the first upload


# --------------------------------------------------------------------------- checksums


@pytest.mark.parametrize("storage", ["PRIVATE", "TEMPORARY"])
def test_store_rejecting_flexible_checksums_names_the_switch_and_the_switch_works(
    s3_server, s3, buckets, proxy, tmp_path, storage
) -> None:
    in_bucket, out_bucket = buckets
    put_objects(s3, in_bucket, {HELLO_PREFIX + "example.data": b"checksums\n"})
    proxy.add_rule(Rule(fault="reject_checksum_headers"))  # 400 InvalidArgument, like OVH
    temporary = {
        "HOOK_TEMPORARY_S3_ENDPOINT_URL": proxy.endpoint_url,
        "HOOK_TEMPORARY_S3_BUCKET": out_bucket,
        "HOOK_TEMPORARY_S3_ACCESS_KEY": s3_server.access_key,
        "HOOK_TEMPORARY_S3_SECRET_KEY": s3_server.secret_key,
    }

    def env(work: str, prefix: str, **extra: str) -> dict[str, str]:
        return order_env(
            s3_server,
            tmp_path / work,
            source=f"s3://{in_bucket}/{HELLO_PREFIX}",
            output=f"s3://{out_bucket}/{prefix}",
            input_endpoint=proxy.endpoint_url,
            output_endpoint=proxy.endpoint_url,
            OUTPUT_STORAGE=storage,
            **(temporary if storage == "TEMPORARY" else {}),
            **extra,
        )

    failed = run(env("w1", "first"))

    assert failed.exit_code == ExitCode.PUBLISH_FAILED
    assert "InvalidArgument" in failed.status_message
    assert "HOOK_S3_CHECKSUM=when_required" in failed.status_message
    assert proxy.events and {e.method for e in proxy.events} == {"PUT"}  # GETs were fine
    assert listing(s3, out_bucket) == {}
    proxy.clear_events()

    worked = run(env("w2", "second", HOOK_S3_CHECKSUM="when_required"))

    assert worked.exit_code == ExitCode.COMPLETED, worked.status_message
    assert proxy.events == []  # nothing the store rejects was sent
    if storage == "PRIVATE":
        assert get(s3, out_bucket, "second/example.data") == b"CHECKSUMS\n"
    else:
        assert listing(s3, out_bucket)[worked.products[0]["Name"]]["Size"] > 0


# --------------------------------------------------------------------------- disk full


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs (root only). Skipped where mounting is not permitted, except under CI."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        why = f"cannot mount a tmpfs: {mounted.stderr.strip() or mounted.returncode}"
        if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
            pytest.fail(f"{why} (CI must run the disk-full test)")
        pytest.skip(why)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


@pytest.mark.parametrize("layout", ["many-small", "one-ranged"])
def test_disk_full_while_staging_is_exit_3_and_removes_temp_files(
    s3_server, s3, buckets, tmp_path, small_disk, layout
) -> None:
    in_bucket, out_bucket = buckets
    if layout == "many-small":  # single GETs: ENOSPC in the middle of a write
        objects = {f"in/f{i}.bin": payload(MiB, str(i)) for i in range(3)}
    else:  # ranged GETs into a preallocated file: ENOSPC up front
        objects = {"in/big.bin": payload(11 * MiB, "big")}
    put_objects(s3, in_bucket, objects)
    work = small_disk / "work"
    env = order_env(
        s3_server,
        work,
        source=f"s3://{in_bucket}/in/",
        output=f"s3://{out_bucket}/run",
        HOOK_PART_SIZE_MB="5",
        HOOK_RESULT_PATH=str(tmp_path / "result.json"),
    )

    result = run(env, write_project(tmp_path, COPY_PROCESSOR))

    assert result.exit_code == ExitCode.STAGING_FAILED
    assert "No space left on device" in result.status_message
    assert temp_leftovers(small_disk) == []
    staged = tree(work / "input")  # only whole files under their final names
    assert all(objects[f"in/{name}"] == data for name, data in staged.items())
    assert json.loads((tmp_path / "result.json").read_text())["ExitCode"] == 3
    assert listing(s3, out_bucket) == {}


# --------------------------------------------------------------------------- secrets


SECRET_NAMES = (
    "source_s3_access_key",
    "source_s3_secret_key",
    "output_s3_access_key",
    "output_s3_secret_key",
)

LEAKY_PROCESSOR = """
    import os

    def process(input_dir, output_dir):
        (output_dir / "out.txt").write_text("x")
        # An author's bug: an exception that carries a credential from the environment.
        raise RuntimeError("login failed with " + os.environ["SOURCE_S3_SECRET_KEY"])
"""


def test_canary_secrets_by_every_route_never_leak(s3_server, s3, buckets, tmp_path) -> None:
    """Canaries as env, options file and --option, at DEBUG, in passing, failing and raising runs.

    moto accepts any key pair, so the canaries are the credentials the runs really use. Checked:
    stdout, stderr (the whole log, tracebacks included), the result file, every published object
    and the manifest, and every file the run left in its work dir. The runs go in parallel.
    """
    in_bucket, out_bucket = buckets
    put_objects(s3, in_bucket, {HELLO_PREFIX + "example.data": b"canary\n"})
    leaky = write_project(tmp_path, LEAKY_PROCESSOR)
    canaries: list[str] = []
    children: dict[str, tuple[subprocess.Popen[str], Path, int]] = {}

    def launch(route: str, case: str) -> None:
        secrets = {n: f"CANARY-{route}-{case}-{n}-{uuid.uuid4().hex}" for n in SECRET_NAMES}
        canaries.extend(secrets.values())
        work = tmp_path / f"{route}-{case}"
        env = {
            "SOURCE_S3_ENDPOINT_URL": s3_server.endpoint_url,
            "SOURCE_S3_PATH": f"s3://{in_bucket}/{HELLO_PREFIX}",
            "OUTPUT_S3_ENDPOINT_URL": s3_server.endpoint_url,
            "OUTPUT_S3_PATH": f"s3://{out_bucket}/{route}-{case}",
            "HOOK_WORK_DIR": str(work),
            "HOOK_LOG_LEVEL": "DEBUG",
            "HOOK_S3_ENGINE": _engine["name"],
        }
        options = dict(secrets)
        if case == "bad-option":  # a ValidationError next to the secrets (pydantic echoes inputs)
            options["output_storage"] = "NOWHERE"
        args = ["--project", str(leaky if case == "raising" else HELLO_WORLD)]
        if route == "env":
            env.update({k.upper(): v for k, v in options.items()})
        elif route == "file":
            order = {"WorkflowOptions": [{"Name": k, "Value": v} for k, v in options.items()]}
            options_file = tmp_path / f"{route}-{case}.json"
            options_file.write_text(json.dumps(order))
            args += ["--options-file", str(options_file)]
        else:
            for k, v in options.items():
                args += ["--option", f"{k}={v}"]
        expected = {"ok": 0, "bad-option": 2, "raising": 4}[case]
        children[f"{route}-{case}"] = (exec_command(env, *args), work, expected)

    try:
        for route in ("env", "file", "option"):
            for case in ("ok", "bad-option"):
                launch(route, case)
        launch("env", "raising")  # only there can an author's code see the secret at all
        outcomes = {
            name: (*child.communicate(timeout=120), child.returncode)
            for name, (child, _, _) in children.items()
        }
    finally:
        for child, _, _ in children.values():
            if child.poll() is None:
                child.kill()
                child.communicate()

    for name, (out, err, code) in outcomes.items():
        _, work, expected = children[name]
        assert code == expected, f"{name}: {err}"
        texts = {"stdout": out, "stderr": err}
        texts |= {str(p): p.read_text(errors="replace") for p in work.rglob("*") if p.is_file()}
        prefix = name + "/"
        texts |= {k: get(s3, out_bucket, k).decode() for k in listing(s3, out_bucket, prefix)}
        if expected == 0:
            assert f"{prefix}{MANIFEST_NAME}" in texts
        if expected == 2:
            assert "output_storage" in err
        if expected == 4:  # the author's traceback is shown, with the secret masked
            assert "Traceback" in err and "login failed with **********" in err
        for where, text in texts.items():
            leaked = [c for c in canaries if c in text]
            assert leaked == [], f"{name}: a canary leaked into {where}"


@pytest.mark.parametrize(
    ("status", "code", "checksum", "hinted"),
    [
        (501, "NotImplemented", "when_supported", True),  # Cloudflare R2's answer
        (400, "XAmzContentSHA256Mismatch", "when_supported", True),
        (403, "AccessDenied", "when_supported", False),  # not a checksum problem
        (400, "InvalidArgument", "when_required", False),  # the switch is already on
    ],
)
def test_the_checksum_hint_appears_only_where_it_can_help(
    s3_server, s3, bucket, proxy, tmp_path, status, code, checksum, hinted
) -> None:
    from pydantic import SecretStr

    from hook_processor.errors import PublishError
    from hook_processor.storage import S3Target, TransferSettings, make_client, publish_private

    (tmp_path / "out.txt").write_text("x")
    proxy.add_rule(Rule(fault="status", status=status, code=code, methods="PUT"))
    settings = TransferSettings(
        concurrency=1, max_attempts=1, checksum=checksum, engine=_engine["name"]
    )
    target = S3Target(
        proxy.endpoint_url, SecretStr(s3_server.access_key), SecretStr(s3_server.secret_key)
    )
    client = make_client(target, settings)
    try:
        with pytest.raises(PublishError) as info:
            publish_private(client, bucket, "run", tmp_path, settings, manifest_extra={})
    finally:
        client.close()
    assert code in str(info.value)
    assert ("HOOK_S3_CHECKSUM=when_required" in str(info.value)) is hinted
