"""The S3 engines (hook_processor/_s3/): chosen explicitly, never swapped, each round-trips.

``HOOK_S3_ENGINE`` (``TransferSettings.engine``) picks ``obstore`` (auto), ``lean`` or ``boto3``
when the client is made; hooking the boto3 client's events afterwards does not change it. The round
trips run on every engine: odd keys, empty, multipart and ranged objects.
"""

from __future__ import annotations

import builtins
import collections
import dataclasses
import hashlib
import io
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from hook_processor._s3.boto import BotoEngine
from hook_processor.errors import OptionsError, StagingError
from hook_processor.options import OptionSources, load_config
from hook_processor.storage import (
    S3Target,
    TransferSettings,
    make_client,
    publish_private,
    stage_in,
)

MiB = 1024 * 1024
SMALL_PARTS = TransferSettings(concurrency=4, part_size=5 * MiB, multipart_threshold=6 * MiB)
ENGINES = ["lean", "boto3", "obstore"]


def _make(s3_server: Any, settings: TransferSettings = SMALL_PARTS, engine: str = "lean") -> Any:
    target = S3Target(
        s3_server.endpoint_url, SecretStr(s3_server.access_key), SecretStr(s3_server.secret_key)
    )
    return make_client(target, dataclasses.replace(settings, engine=engine))


def _write_tree(root: Path, files: dict[str, bytes]) -> Path:
    """``files`` (relative path -> bytes) written under ``root``; ``root`` returned."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, body in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(body)
    return root


def _sent(client: Any, operation: str) -> list[str]:
    """Keys of the ``operation`` requests that go through the boto3 client from now on."""
    seen: list[str] = []
    lock = threading.Lock()

    def hook(request: Any, **_: Any) -> None:
        with lock:
            seen.append(request.url)

    client.boto.meta.events.register(f"before-send.s3.{operation}", hook)
    return seen


@pytest.mark.parametrize(
    ("engine", "through_boto3"),
    # obstore lists through boto3 (its own listing has no continuation tokens: obstore_engine.py)
    [("lean", (0, 0)), ("boto3", (1, 1)), ("obstore", (0, 1))],
    ids=ENGINES,
)
def test_the_engine_is_the_one_chosen_and_a_hook_does_not_change_it(
    s3_server: Any,
    s3: Any,
    bucket: str,
    tmp_path: Path,
    engine: str,
    through_boto3: tuple[int, int],
) -> None:
    s3.put_object(Bucket=bucket, Key="e/a.txt", Body=b"a")
    client = _make(s3_server, engine=engine)
    assert client.name == engine
    gets = _sent(client, "GetObject")  # a hooked client: the lean engine stays the lean one
    lists = _sent(client, "ListObjectsV2")

    stage_in(client, bucket, "e/", tmp_path, SMALL_PARTS)

    assert (tmp_path / "a.txt").read_bytes() == b"a"
    assert (len(gets), len(lists)) == through_boto3
    assert client.name == engine


def test_default_engine_is_auto() -> None:
    assert TransferSettings().engine == "auto"
    config = load_config(OptionSources(env={"INPUT_S3_PATH": "s3://inb/x/", **_OUTPUT}))
    assert config.platform.s3_engine == "auto"


_OUTPUT = {"s3_bucket": "outb", "S3_ACCESS_KEY": "AK", "S3_SECRET_KEY": "SK"}


def test_hook_s3_engine_is_validated_and_named() -> None:
    env = {"INPUT_S3_PATH": "s3://inb/x/", "HOOK_S3_ENGINE": "warp", **_OUTPUT}
    with pytest.raises(
        OptionsError, match=r"HOOK_S3_ENGINE: Input should be 'auto', 'lean', 'boto3' or 'obstore'"
    ):
        load_config(OptionSources(env=env))
    env["HOOK_S3_ENGINE"] = "boto3"
    assert load_config(OptionSources(env=env)).platform.s3_engine == "boto3"


def test_make_client_refuses_an_unknown_engine(s3_server: Any) -> None:
    with pytest.raises(OptionsError, match=r"HOOK_S3_ENGINE: 'warp' is not an S3 engine"):
        _make(s3_server, engine="warp")


def test_lean_engine_behind_a_proxy_is_refused_with_the_fix(
    s3_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    with pytest.raises(OptionsError, match=r"HTTP_PROXY.*set HOOK_S3_ENGINE=boto3"):
        _make(s3_server, engine="lean")
    assert _make(s3_server, engine="boto3").name == "boto3"  # botocore goes through proxies


def test_auto_is_obstore_also_behind_a_proxy(
    s3_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    direct = _make(s3_server, engine="auto")
    assert (direct.name, direct.choice) == ("obstore", "auto")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    assert _make(s3_server, engine="auto").name == "obstore"  # it goes through proxies


def test_auto_without_obstore_is_lean_and_boto3_behind_a_proxy_and_says_why(
    s3_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "obstore" else find_spec(name, *a),
    )
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    direct = _make(s3_server, engine="auto")
    assert (direct.name, direct.choice) == ("lean", "auto: obstore is not installed")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    proxied = _make(s3_server, engine="auto")
    assert proxied.name == "boto3"
    assert proxied.choice.startswith("auto: obstore is not installed, HTTP_PROXY applies")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert _make(s3_server, engine="auto").name == "lean"  # NO_PROXY: reached directly


def test_obstore_reaches_an_endpoint_no_proxy_names_directly(
    s3_server: Any, s3: Any, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY names a closed port, NO_PROXY the endpoint: the transfer works (direct)."""
    for name in ("no_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    s3.put_object(Bucket=bucket, Key="n/a.txt", Body=b"direct")
    client = _make(s3_server, engine="obstore")
    stage_in(client, bucket, "n/", tmp_path, SMALL_PARTS)
    client.close()
    assert (tmp_path / "a.txt").read_bytes() == b"direct"


def test_the_obstore_engine_goes_through_the_environments_http_proxy(
    s3_server: Any, s3: Any, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY applies to the endpoint: obstore's requests go to the proxy (absolute-form
    request lines), and the transfer works through it."""
    from fault_proxy import FaultProxy

    for name in ("NO_PROXY", "no_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    s3.put_object(Bucket=bucket, Key="p/a.txt", Body=b"proxied")
    with FaultProxy(upstream=s3_server.endpoint_url) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.endpoint_url)
        client = _make(s3_server, engine="obstore")
        assert client.name == "obstore"
        (tmp_path / "src").mkdir()
        (tmp_path / "src" / "b.txt").write_bytes(b"up")
        stage_in(client, bucket, "p/", tmp_path / "dst", SMALL_PARTS)
        publish_private(client, bucket, "q", tmp_path / "src", SMALL_PARTS, manifest_extra={})
        client.close()
        through = [(m, t) for m, t in proxy.requests]
    assert (tmp_path / "dst" / "a.txt").read_bytes() == b"proxied"
    assert s3.get_object(Bucket=bucket, Key="q/b.txt")["Body"].read() == b"up"
    assert any(m == "GET" and t.endswith(f"/{bucket}/p/a.txt") for m, t in through), through
    assert any(m == "PUT" and t.endswith(f"/{bucket}/q/b.txt") for m, t in through), through


def test_a_boto3_client_handed_in_is_used_as_it_is(
    s3_server: Any, s3: Any, bucket: str, tmp_path: Path
) -> None:
    s3.put_object(Bucket=bucket, Key="h/a.txt", Body=b"handed")
    engine = BotoEngine(s3)
    gets = _sent(engine, "GetObject")
    stage_in(engine, bucket, "h/", tmp_path, SMALL_PARTS)
    assert (tmp_path / "a.txt").read_bytes() == b"handed" and len(gets) == 1


@pytest.mark.parametrize("engine", ENGINES)
def test_a_run_names_its_engine_once(
    s3_server: Any, s3: Any, bucket: str, tmp_path: Path, engine: str
) -> None:
    from exec_helpers import HELLO_WORLD, private_env, put_tree

    from hook_processor import runtime
    from hook_processor.errors import ExitCode

    put_tree(s3, bucket, "dedl_hello_world/input_file_location/", {"example.data": b"abc"})
    env = private_env(s3_server, bucket, bucket, tmp_path / "w", HOOK_S3_ENGINE=engine)
    stream = io.StringIO()
    result = runtime.run(OptionSources(env=env), project_dir=HELLO_WORLD, log_stream=stream)
    assert result.exit_code == ExitCode.COMPLETED, stream.getvalue()
    named = [line for line in stream.getvalue().splitlines() if "S3 engine:" in line]
    assert len(named) == 1 and f"S3 engine: {engine} (HOOK_S3_ENGINE)" in named[0], named


@pytest.mark.parametrize("engine", ENGINES)
def test_round_trip_through_each_engine(
    s3_server: Any, bucket: str, tmp_path: Path, engine: str
) -> None:
    client = _make(s3_server, engine=engine)
    files = {
        "é t/naïve file.txt": b"naive",
        "plus+sign.txt": b"plus",
        "100%/pct %41.txt": b"pct",
        "日本/データ.bin": os.urandom(3 * MiB),  # streamed from disk (> one chunk)
        "tilde~=&;,$@.txt": b"odd",
        "empty": b"",
        "big.bin": os.urandom(12 * MiB + 7),  # multipart up, ranged GETs down
    }
    src, dest = _write_tree(tmp_path / "src", files), tmp_path / "dest"

    out = publish_private(client, bucket, "run", src, SMALL_PARTS, manifest_extra={})
    stats = stage_in(client, bucket, "run/", dest, SMALL_PARTS)

    assert out.stats.retries == stats.retries == 0
    for rel, body in files.items():
        assert (dest / rel).read_bytes() == body, rel
    assert {p.name for p in dest.rglob("*.hookpart-*")} == set()


@pytest.mark.parametrize("engine", ENGINES)
def test_engine_errors_are_botocore_errors_with_the_code(
    s3_server: Any, bucket: str, tmp_path: Path, engine: str
) -> None:
    client = _make(s3_server, engine=engine)
    with pytest.raises(StagingError, match="NoSuchBucket"):
        stage_in(client, bucket + "-missing", "in/", tmp_path, SMALL_PARTS)


@pytest.mark.parametrize("engine", ENGINES)
def test_multipart_object_with_an_untyped_checksum_stages_in(
    s3_server: Any, s3: Any, bucket: str, tmp_path: Path, engine: str
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
    client = _make(s3_server, engine=engine)

    stage_in(client, bucket, "mp/", tmp_path / "dest", SMALL_PARTS)

    assert (tmp_path / "dest" / "big.bin").read_bytes() == big


class _Counting:
    """A file object that adds the bytes read through it to ``tally[name]``."""

    def __init__(self, fh: Any, tally: collections.Counter[str], name: str) -> None:
        self._fh, self._tally, self._name = fh, tally, name

    def read(self, n: int = -1) -> bytes:
        data = self._fh.read(n)
        self._tally[self._name] += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        n = self._fh.readinto(buffer) or 0
        self._tally[self._name] += n
        return n

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)

    def __enter__(self) -> _Counting:
        return self

    def __exit__(self, *exc: object) -> None:
        self._fh.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_publish_reads_each_output_file_once(
    s3_server: Any,
    s3: Any,
    bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    engine: str,
) -> None:
    files = {
        "small.txt": b"s" * 1000,
        "mid.bin": os.urandom(3 * MiB),  # one PUT, several read blocks
        "big.bin": os.urandom(12 * MiB + 5),  # multipart: 3 parts
    }
    src = _write_tree(tmp_path / "src", files)
    client = _make(s3_server, engine=engine)
    tally: collections.Counter[str] = collections.Counter()
    real_open = builtins.open

    def counting_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        fh = real_open(file, mode, *args, **kwargs)
        if isinstance(file, str | os.PathLike) and Path(file).parent == src and "r" in mode:
            return _Counting(fh, tally, Path(file).name)
        return fh

    monkeypatch.setattr(builtins, "open", counting_open)
    out = publish_private(client, bucket, "once", src, SMALL_PARTS, manifest_extra={})
    monkeypatch.undo()

    assert dict(tally) == {name: len(body) for name, body in files.items()}  # 1x, not 2x
    assert {p.name: p.sha256 for p in out.products} == {
        name: hashlib.sha256(body).hexdigest() for name, body in files.items()
    }
    for name, body in files.items():
        assert s3.get_object(Bucket=bucket, Key=f"once/{name}")["Body"].read() == body


class _Counted:
    """Records the most futures a job had submitted and not yet finished at any moment."""

    def __init__(self) -> None:
        self.outstanding = self.most = self.submitted = 0
        self.lock = threading.Lock()

    def executor(self) -> type:
        from concurrent.futures import ThreadPoolExecutor

        counted = self

        class Pool(ThreadPoolExecutor):
            def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
                with counted.lock:
                    counted.outstanding += 1
                    counted.submitted += 1
                    counted.most = max(counted.most, counted.outstanding)
                future = super().submit(fn, *args, **kwargs)
                future.add_done_callback(lambda _f: counted.finished())
                return future

        return Pool

    def finished(self) -> None:
        with self.lock:
            self.outstanding -= 1


@pytest.mark.parametrize("engine", ENGINES)
def test_many_files_are_submitted_to_the_pool_a_few_at_a_time(
    s3_server: Any,
    s3: Any,
    bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    engine: str,
) -> None:
    from hook_processor._s3 import transfer

    settings = dataclasses.replace(SMALL_PARTS, concurrency=3)
    files = {f"f{i:03d}.txt": f"file {i}".encode() for i in range(150)}
    src = _write_tree(tmp_path / "src", files)
    client = _make(s3_server, settings, engine=engine)
    up, down = _Counted(), _Counted()

    monkeypatch.setattr(transfer, "ThreadPoolExecutor", up.executor())
    publish_private(client, bucket, "many", src, settings, manifest_extra={})
    monkeypatch.setattr(transfer, "ThreadPoolExecutor", down.executor())
    stage_in(client, bucket, "many/", tmp_path / "dest", settings)

    bound = transfer.QUEUED_PER_WORKER * settings.concurrency  # 6, not 150
    assert (up.submitted, down.submitted) == (150, 151)  # every file (and the manifest) ran
    assert 1 < up.most <= bound and 1 < down.most <= bound
    staged = {p.name: p.read_bytes() for p in (tmp_path / "dest").iterdir()}
    assert staged.pop("_manifest.json") and staged == files


@pytest.mark.parametrize("engine", ENGINES)
def test_a_retried_upload_is_not_counted_twice(
    s3_server: Any, bucket: str, tmp_path: Path, engine: str
) -> None:
    from fault_proxy import FaultProxy, Rule

    from hook_processor import _progress

    files = {"a.txt": b"a" * 1000, "big.bin": os.urandom(12 * MiB + 5)}
    src = _write_tree(tmp_path / "src", files)
    seen: list[int] = []

    class Tracker(_progress.Tracker):
        def __call__(self, nbytes: int) -> None:
            super().__call__(nbytes)
            seen.append(self.bytes_done)

    tracker = Tracker("publish")
    with FaultProxy(upstream=s3_server.endpoint_url) as proxy:
        proxy.add_rule(Rule(fault="status", status=503, methods="PUT", query="partNumber", count=1))
        proxy.add_rule(
            Rule(fault="status", status=500, methods="PUT", key_pattern=r"a\.txt$", count=1)
        )
        target = S3Target(
            proxy.endpoint_url, SecretStr(s3_server.access_key), SecretStr(s3_server.secret_key)
        )
        settings = dataclasses.replace(SMALL_PARTS, engine=engine)
        out = publish_private(
            make_client(target, settings),
            bucket,
            "p",
            src,
            settings,
            manifest_extra={},
            progress=tracker,
        )

    assert [e.rule for e in proxy.events] == ["status", "status"]
    assert out.stats.retries >= 2
    total = sum(len(b) for b in files.values())
    assert (tracker.bytes_done, tracker.files_done) == (total, 2)
    assert max(seen) == total  # never more than the files hold, retries included


@pytest.mark.parametrize("engine", ENGINES)
def test_upload_bodies_in_memory_stay_within_the_job_budget(
    s3_server: Any,
    s3: Any,
    bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    engine: str,
) -> None:
    from hook_processor._s3 import transfer

    most: list[int] = [0]

    class Recorded(transfer.Buffers):
        def take(self, *args: Any, **kwargs: Any) -> None:
            super().take(*args, **kwargs)
            most[0] = max(most[0], self.used)

    limit = 8 * MiB
    monkeypatch.setattr(transfer, "BUFFER_BYTES", limit)
    monkeypatch.setattr(transfer, "Buffers", Recorded)
    files = {"big.bin": os.urandom(26 * MiB)} | {f"m{i}.bin": os.urandom(3 * MiB) for i in range(6)}
    src = _write_tree(tmp_path / "src", files)
    settings = dataclasses.replace(SMALL_PARTS, concurrency=4)

    out = publish_private(
        _make(s3_server, settings, engine), bucket, "b", src, settings, manifest_extra={}
    )

    # at most the budget, plus one part that the in-order hash needs next (5 MiB parts)
    assert 3 * MiB <= most[0] <= limit + 5 * MiB
    assert {p.name: p.sha256 for p in out.products} == {
        name: hashlib.sha256(body).hexdigest() for name, body in files.items()
    }
    for name, body in files.items():
        assert s3.get_object(Bucket=bucket, Key=f"b/{name}")["Body"].read() == body
