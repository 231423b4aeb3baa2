"""The claim on an output prefix (issue 12 items 1, 2, 4, 6) against the session's moto server.

Preflight before stage-in, overlapping prefixes and input == output, two runs at once, a rerun of
the same order, and what a killed run left under the prefix.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import rclone_server

from hook_processor import runtime
from hook_processor.errors import ExitCode
from hook_processor.options import OptionSources

REPO_ROOT = Path(__file__).resolve().parent.parent
HELLO_WORLD = REPO_ROOT / "examples" / "hello_world"
# The claim's conditional writes, reads and deletes run on every selectable engine.
ENGINES = ["lean", "boto3", "obstore"]
_engine = {"name": "auto"}


@pytest.fixture(autouse=True, params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Iterator[str]:
    _engine["name"] = request.param
    yield request.param
    _engine["name"] = "auto"


def env_for(server, bucket: str, work: Path, inp: str, out: str, **extra: str) -> dict[str, str]:
    return {
        "INPUT_S3_ENDPOINT_URL": server.endpoint_url,
        "INPUT_S3_PATH": f"s3://{bucket}/{inp}",
        "INPUT_S3_ACCESS_KEY": server.access_key,
        "INPUT_S3_SECRET_KEY": server.secret_key,
        "OUTPUT_STORAGE": "PRIVATE",
        "OUTPUT_S3_ENDPOINT_URL": server.endpoint_url,
        "OUTPUT_S3_PATH": f"s3://{bucket}/{out}",
        "OUTPUT_S3_ACCESS_KEY": server.access_key,
        "OUTPUT_S3_SECRET_KEY": server.secret_key,
        "HOOK_WORK_DIR": str(work),
        "HOOK_S3_ENGINE": _engine["name"],
        **extra,
    }


def project(tmp_path: Path, body: str) -> Path:
    root = tmp_path / f"proj-{uuid.uuid4().hex[:6]}"
    root.mkdir()
    module = f"claimproc_{uuid.uuid4().hex[:8]}"
    (root / f"{module}.py").write_text(textwrap.dedent(body))
    (root / "pyproject.toml").write_text(
        f'[tool.hook-processor]\nname = "claim"\nentrypoint = "{module}:process"\n'
    )
    return root


def keys(s3, bucket: str, prefix: str = "") -> list[str]:
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return sorted(o["Key"] for o in listed)


def stac(prefix: str, *products: str) -> list[str]:
    """The STAC files a run publishes under ``prefix`` beside its products (one item each)."""
    return [f"{prefix}/_stac/{p}.json" for p in products] + [f"{prefix}/catalog.json"]


def get(s3, bucket: str, key: str) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def run(env: dict[str, str], proj: Path = HELLO_WORLD):  # type: ignore[no-untyped-def]
    return runtime.run(OptionSources(env=env), project_dir=proj)


def nothing_staged(result, work: Path) -> bool:  # type: ignore[no-untyped-def]
    """The input was listed, then the output refused: not one byte downloaded."""
    return (
        "preflight" in result.timings
        and result.input_files == 0
        and list((work / "input").iterdir()) == []
    )


# -- item 6: the output side is checked before stage-in ----------------------------------------


def test_missing_output_bucket_is_refused_before_stage_in(s3_server, s3, bucket, tmp_path) -> None:
    s3.put_object(Bucket=bucket, Key="in/example.data", Body=b"abc")
    env = env_for(s3_server, bucket, tmp_path / "w", "in/", "out")
    env["OUTPUT_S3_PATH"] = "s3://no-such-output-bucket/out"
    result = run(env)
    assert result.exit_code == ExitCode.BAD_OPTIONS
    assert result.status_message == (
        f"the output bucket no-such-output-bucket does not exist at {s3_server.endpoint_url}: "
        "create it or correct S3_BUCKET / output_s3_path; nothing was staged"
    )
    assert nothing_staged(result, tmp_path / "w")


def test_another_orders_manifest_is_refused_before_stage_in(
    s3_server, s3, bucket, tmp_path
) -> None:
    s3.put_object(Bucket=bucket, Key="in/example.data", Body=b"abc")
    seeded = json.dumps({"order_id": "7", "files": []}).encode()
    s3.put_object(Bucket=bucket, Key="out/_manifest.json", Body=seeded)
    env = env_for(s3_server, bucket, tmp_path / "w", "in/", "out", HOOK_ORDER_ID="42")
    result = run(env)
    assert result.exit_code == ExitCode.PUBLISH_FAILED
    assert f"s3://{bucket}/out/_manifest.json already exists" in result.status_message
    assert "(order 7)" in result.status_message
    assert nothing_staged(result, tmp_path / "w")
    assert keys(s3, bucket, "out/") == ["out/_manifest.json"]
    assert get(s3, bucket, "out/_manifest.json") == seeded


# -- item 2: overlapping prefixes, input == output ----------------------------------------------


def test_parent_run_cannot_replace_a_child_runs_files(s3_server, s3, bucket, tmp_path) -> None:
    s3.put_object(Bucket=bucket, Key="in/top.dat", Body=b"child")
    first = run(env_for(s3_server, bucket, tmp_path / "w1", "in/", "n/sub", HOOK_ORDER_ID="1"))
    assert first.exit_code == ExitCode.COMPLETED, first.status_message
    s3.put_object(Bucket=bucket, Key="in2/sub/top.dat", Body=b"parent")
    second = run(env_for(s3_server, bucket, tmp_path / "w2", "in2/", "n", HOOK_ORDER_ID="2"))
    assert second.exit_code == ExitCode.PUBLISH_FAILED
    assert f"s3://{bucket}/n/sub/top.dat would replace objects of the manifest " in (
        second.status_message
    )
    assert f"s3://{bucket}/n/sub/_manifest.json (order 1)" in second.status_message
    assert get(s3, bucket, "n/sub/top.dat") == b"CHILD"  # the first set is intact
    assert keys(s3, bucket, "n/") == sorted(
        ["n/sub/_manifest.json", "n/sub/top.dat", *stac("n/sub", "top.dat")]
    )


def test_child_run_cannot_replace_a_parent_runs_files(s3_server, s3, bucket, tmp_path) -> None:
    s3.put_object(Bucket=bucket, Key="in/sub/top.dat", Body=b"parent")
    first = run(env_for(s3_server, bucket, tmp_path / "w1", "in/", "n", HOOK_ORDER_ID="1"))
    assert first.exit_code == ExitCode.COMPLETED, first.status_message
    s3.put_object(Bucket=bucket, Key="in2/top.dat", Body=b"child")
    second = run(env_for(s3_server, bucket, tmp_path / "w2", "in2/", "n/sub", HOOK_ORDER_ID="2"))
    assert second.exit_code == ExitCode.PUBLISH_FAILED
    assert f"s3://{bucket}/n/sub/top.dat would replace objects of the manifest " in (
        second.status_message
    )
    assert f"s3://{bucket}/n/_manifest.json (order 1)" in second.status_message
    assert get(s3, bucket, "n/sub/top.dat") == b"PARENT"
    manifest = json.loads(get(s3, bucket, "n/_manifest.json"))
    (top,) = [f for f in manifest["files"] if f["key"] == "n/sub/top.dat"]
    assert top["sha256"] == hashlib.sha256(b"PARENT").hexdigest()


def test_output_equal_to_input_is_refused(s3_server, s3, bucket, tmp_path) -> None:
    s3.put_object(Bucket=bucket, Key="data/example.data", Body=b"abc")
    result = run(env_for(s3_server, bucket, tmp_path / "w", "data/", "data"))
    assert result.exit_code == ExitCode.PUBLISH_FAILED
    assert result.status_message.startswith(
        f"refusing to publish: s3://{bucket}/data/example.data would replace objects of "
        f"this run's input s3://{bucket}/data/"
    )
    assert get(s3, bucket, "data/example.data") == b"abc"  # the input is untouched
    assert keys(s3, bucket) == ["data/example.data"]


def _via(proxy, s3_server):  # type: ignore[no-untyped-def]
    """The server as env_for reads it, reached through ``proxy``."""
    keys = {"access_key": s3_server.access_key, "secret_key": s3_server.secret_key}
    return type("S", (), {"endpoint_url": proxy.endpoint_url, **keys})


def test_an_input_beside_the_output_in_one_bucket_is_listed_once(
    s3_server, s3, bucket, tmp_path
) -> None:
    # Only the input's objects under the output prefix can be replaced by an output, and the
    # output's own listing holds them: a second listing of the whole input (100,000 keys in the
    # bench's shared bucket) is not needed to protect it.
    from fault_proxy import FaultProxy

    for n in range(3):
        s3.put_object(Bucket=bucket, Key=f"in/f{n}.data", Body=b"abc")
    with FaultProxy(upstream=s3_server.endpoint_url) as proxy:
        server = _via(proxy, s3_server)
        result = run(env_for(server, bucket, tmp_path / "w", "in/", "out/run"))
    assert result.exit_code == ExitCode.COMPLETED, result.status_message
    listed = [s.target for s in proxy.sent if s.method == "GET" and "list-type=2" in s.target]
    assert len([t for t in listed if "prefix=in%2F" in t]) == 1, listed
    assert get(s3, bucket, "out/run/f0.data") == b"ABC"


# -- item 1: two runs at once, and a writer that ignores the claim ------------------------------

SLOW = """
    import time

    def process(input_dir, output_dir):
        time.sleep(1.5)
        tag = (input_dir / "tag.txt").read_text()
        for n in range(20):
            (output_dir / f"f{n:02}.dat").write_text(tag * (n + 1))
"""


def test_two_concurrent_runs_one_wins_the_other_fails_without_manifest(
    s3_server, s3, bucket, tmp_path
) -> None:
    proj = project(tmp_path, SLOW)
    procs = []
    for name in ("a", "b"):
        s3.put_object(Bucket=bucket, Key=f"in-{name}/tag.txt", Body=name.encode())
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("HOOK_", "AWS_"))},
            **env_for(
                s3_server, bucket, tmp_path / f"w-{name}", f"in-{name}/", "same", HOOK_ORDER_ID=name
            ),
            "HOOK_PROJECT_DIR": str(proj),
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "hook_processor", "exec"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outs = [p.communicate(timeout=120) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 5], outs
    winner = "ab"[[p.returncode for p in procs].index(0)]
    loser_err = outs["ab".index("b" if winner == "a" else "a")][1]
    assert "/same/_claim.json is held by another run (order " in loser_err
    manifest = json.loads(get(s3, bucket, "same/_manifest.json"))
    assert manifest["order_id"] == winner
    listed = keys(s3, bucket, "same/")
    assert listed == sorted([*(f["key"] for f in manifest["files"]), "same/_manifest.json"])
    for entry in manifest["files"]:  # every object is the winner's, byte for byte
        body = get(s3, bucket, entry["key"])
        assert hashlib.sha256(body).hexdigest() == entry["sha256"]
        if entry["key"] not in stac("same", entry["key"].rsplit("/", 1)[-1][:-5]):
            assert set(body.decode()) == {winner}  # a product, not the catalog


INTRUDER = """
    import boto3, os

    def process(input_dir, output_dir):
        (output_dir / "mine.dat").write_text("mine")
        s3 = boto3.client("s3", endpoint_url=os.environ["INPUT_S3_ENDPOINT_URL"],
                          aws_access_key_id="x", aws_secret_access_key="y", region_name="us-east-1")
        bucket = os.environ["INPUT_S3_PATH"].split("/")[2]
        s3.put_object(Bucket=bucket, Key="shared/intruder.dat", Body=b"not yours")
"""


def test_an_object_this_run_did_not_write_means_no_manifest(
    s3_server, s3, bucket, tmp_path, monkeypatch
) -> None:
    s3.put_object(Bucket=bucket, Key="in/x", Body=b"x")
    env = env_for(s3_server, bucket, tmp_path / "w", "in/", "shared")
    for name in ("INPUT_S3_ENDPOINT_URL", "INPUT_S3_PATH"):
        monkeypatch.setenv(name, env[name])
    result = run(env, project(tmp_path, INTRUDER))
    assert result.exit_code == ExitCode.PUBLISH_FAILED
    assert result.status_message.startswith(
        f"another run wrote under s3://{bucket}/shared while this one published: "
        f"s3://{bucket}/shared/intruder.dat are not the objects this run uploaded"
    )
    assert keys(s3, bucket, "shared/") == sorted(
        ["shared/intruder.dat", "shared/mine.dat", *stac("shared", "mine.dat")]
    )


def _through_listing_fault(s3_server, bucket, tmp_path, methods):  # type: ignore[no-untyped-def]
    """Run hello world (in/example.data "abc" -> out/run/example.data "ABC") through a proxy
    that shows the output's ETag as another one in the answers to ``methods``."""
    from fault_proxy import FaultProxy, Rule

    with FaultProxy(upstream=s3_server.endpoint_url) as proxy:
        proxy.add_rule(
            Rule(
                fault="sse_kms",  # rewrites the ETag wherever it appears in the answer
                methods=methods,
                etag_from=hashlib.md5(b"ABC").hexdigest(),
                etag_to="f" * 32,
            )
        )
        server = _via(proxy, s3_server)
        return run(env_for(server, bucket, tmp_path / "w", "in/", "out/run"))


def test_a_listing_that_lags_behind_the_upload_is_checked_again_by_head(
    s3_server, s3, bucket, tmp_path
) -> None:
    # Seen once on rclone serve s3 under load: the verification's listing showed an object
    # this run had just written otherwise than written. The HEAD of the object decides.
    s3.put_object(Bucket=bucket, Key="in/example.data", Body=b"abc")
    result = _through_listing_fault(s3_server, bucket, tmp_path, "GET")  # listings, not HEAD
    assert result.exit_code == ExitCode.COMPLETED, result.status_message
    assert get(s3, bucket, "out/run/example.data") == b"ABC"
    assert "out/run/_manifest.json" in keys(s3, bucket, "out/run/")


def test_an_object_replaced_after_its_upload_is_named_with_both_versions(
    s3_server, s3, bucket, tmp_path
) -> None:
    s3.put_object(Bucket=bucket, Key="in/example.data", Body=b"abc")
    result = _through_listing_fault(s3_server, bucket, tmp_path, ("GET", "HEAD"))
    assert result.exit_code == ExitCode.PUBLISH_FAILED
    md5 = hashlib.md5(b"ABC").hexdigest()
    assert result.status_message.startswith(
        f"another run wrote under s3://{bucket}/out/run while this one published: "
        f"s3://{bucket}/out/run/example.data are not the objects this run uploaded "
        f"(s3://{bucket}/out/run/example.data holds 3 bytes, ETag {'f' * 32}; this run wrote "
        f"3 bytes, ETag {md5}); no manifest was written"
    ), result.status_message
    assert "out/run/_manifest.json" not in keys(s3, bucket, "out/run/")


# -- item 4: a rerun of the same order ----------------------------------------------------------


def test_rerun_of_the_same_order_verifies_and_completes(s3_server, s3, bucket, tmp_path) -> None:
    s3.put_object(Bucket=bucket, Key="in/example.data", Body=b"abc")
    env = env_for(s3_server, bucket, tmp_path / "w", "in/", "out", HOOK_ORDER_ID="42")
    first = run(env)
    assert first.exit_code == ExitCode.COMPLETED, first.status_message
    before = get(s3, bucket, "out/_manifest.json")
    again = run(env)
    assert again.exit_code == ExitCode.COMPLETED, again.status_message
    assert "already published by an earlier run of this order" in again.status_message
    assert again.products == first.products and again.manifest == first.manifest
    assert get(s3, bucket, "out/_manifest.json") == before
    other = run({**env, "HOOK_ORDER_ID": "43"})
    assert other.exit_code == ExitCode.PUBLISH_FAILED
    assert "(order 42)" in other.status_message


def test_rerun_without_order_id_is_recognised_by_its_digest(
    s3_server, s3, bucket, tmp_path
) -> None:
    s3.put_object(Bucket=bucket, Key="in/example.data", Body=b"abc")
    env = env_for(s3_server, bucket, tmp_path / "w", "in/", "out")
    assert run(env).exit_code == ExitCode.COMPLETED
    assert run(env).exit_code == ExitCode.COMPLETED
    s3.put_object(Bucket=bucket, Key="in2/example.data", Body=b"abc")
    different = run({**env, "INPUT_S3_PATH": f"s3://{bucket}/in2/"})
    assert different.exit_code == ExitCode.PUBLISH_FAILED
    assert "already exists" in different.status_message


def test_rerun_after_a_kill_removes_leftovers_and_aborts_uploads(
    s3_server, s3, bucket, tmp_path
) -> None:
    s3.put_object(Bucket=bucket, Key="in/example.data", Body=b"abc")
    # What a run of order 42 killed mid-publication leaves: its lease, a file, a multipart.
    lease = {"token": "dead", "order_id": "42", "created": "2026-01-01T00:00:00Z"}
    s3.put_object(Bucket=bucket, Key="out/_claim.json", Body=json.dumps(lease).encode())
    s3.put_object(Bucket=bucket, Key="out/stale.dat", Body=b"from the killed run")
    s3.create_multipart_upload(Bucket=bucket, Key="out/big.bin")
    result = run(env_for(s3_server, bucket, tmp_path / "w", "in/", "out", HOOK_ORDER_ID="42"))
    assert result.exit_code == ExitCode.COMPLETED, result.status_message
    assert result.status_message == (
        "Processing finished successfully (removed 1 leftover objects in no manifest; "
        "aborted 1 unfinished multipart uploads)"
    )
    assert keys(s3, bucket, "out/") == sorted(
        ["out/_manifest.json", "out/example.data", *stac("out", "example.data")]
    )
    assert s3.list_multipart_uploads(Bucket=bucket, Prefix="out/").get("Uploads", []) == []


def test_a_live_lease_of_another_order_is_refused_before_stage_in(
    s3_server, s3, bucket, tmp_path
) -> None:
    s3.put_object(Bucket=bucket, Key="in/example.data", Body=b"abc")
    lease = {"token": "t", "order_id": "7", "created": "2026-12-01T12:00:00Z"}
    s3.put_object(Bucket=bucket, Key="out/_claim.json", Body=json.dumps(lease).encode())
    s3.put_object(Bucket=bucket, Key="out/partial.dat", Body=b"order 7 is uploading")
    result = run(env_for(s3_server, bucket, tmp_path / "w", "in/", "out", HOOK_ORDER_ID="42"))
    assert result.exit_code == ExitCode.PUBLISH_FAILED
    assert result.status_message.startswith(
        f"s3://{bucket}/out/_claim.json is held by another run (order 7, since "
        "2026-12-01T12:00:00Z)"
    )
    assert nothing_staged(result, tmp_path / "w")
    assert keys(s3, bucket, "out/") == ["out/_claim.json", "out/partial.dat"]


# -- a store that ignores If-None-Match and verifies signatures: rclone serve s3 ----------------

RCLONE_KEY, RCLONE_SECRET = "claim-access", "claim-secret-0123456789"


@pytest.fixture(scope="module")
def rclone_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("rclone-claim")
    (root / "rbk").mkdir()  # a bucket is a folder
    with rclone_server.rclone_s3(root, RCLONE_KEY, RCLONE_SECRET) as endpoint:
        yield endpoint


def rclone_env(endpoint: str, work: Path, out: str, **extra: str) -> dict[str, str]:
    return {
        "INPUT_S3_ENDPOINT_URL": endpoint,
        "INPUT_S3_PATH": "s3://rbk/in/",
        "INPUT_S3_ACCESS_KEY": RCLONE_KEY,
        "INPUT_S3_SECRET_KEY": RCLONE_SECRET,
        "OUTPUT_STORAGE": "PRIVATE",
        "OUTPUT_S3_ENDPOINT_URL": endpoint,
        "OUTPUT_S3_PATH": f"s3://rbk/{out}",
        "OUTPUT_S3_ACCESS_KEY": RCLONE_KEY,
        "OUTPUT_S3_SECRET_KEY": RCLONE_SECRET,
        "HOOK_WORK_DIR": str(work),
        "HOOK_S3_ENGINE": _engine["name"],
        **extra,
    }


def rclone_client(endpoint: str):  # type: ignore[no-untyped-def]
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=RCLONE_KEY,
        aws_secret_access_key=RCLONE_SECRET,
        region_name="us-east-1",
    )


def test_wrong_output_credentials_are_refused_before_stage_in(rclone_s3, tmp_path) -> None:
    rclone_client(rclone_s3).put_object(Bucket="rbk", Key="in/example.data", Body=b"abc")
    env = rclone_env(rclone_s3, tmp_path / "w", "wrong", OUTPUT_S3_SECRET_KEY="not-the-secret")
    result = run(env)
    assert result.exit_code == ExitCode.PUBLISH_FAILED
    assert result.status_message.startswith(
        f"the output store refused access to s3://rbk/wrong at {rclone_s3} (HTTP 403): check "
        "S3_ACCESS_KEY / S3_SECRET_KEY"
    )
    assert "not-the-secret" not in result.status_message
    assert nothing_staged(result, tmp_path / "w")


def test_store_without_conditional_writes_is_said_and_still_claimed(
    rclone_s3, tmp_path, capsys, engine
) -> None:
    nc, held = f"nc-{engine}", f"held-{engine}"  # one rclone server for every engine's run
    s3 = rclone_client(rclone_s3)
    s3.put_object(Bucket="rbk", Key="in/example.data", Body=b"abc")
    result = run(rclone_env(rclone_s3, tmp_path / "w1", nc, HOOK_ORDER_ID="1"))
    assert result.exit_code == ExitCode.COMPLETED, result.status_message
    err = capsys.readouterr().err
    assert "this store ignores If-None-Match: the claim is read back, not atomic" in err
    assert keys(s3, "rbk", f"{nc}/") == sorted(  # no lease
        [f"{nc}/_manifest.json", f"{nc}/example.data", *stac(nc, "example.data")]
    )
    # A lease of another order is seen and refused there too (without the atomic guarantee).
    lease = {"token": "t", "order_id": "7", "created": "2026-12-01T12:00:00Z"}
    s3.put_object(Bucket="rbk", Key=f"{held}/_claim.json", Body=json.dumps(lease).encode())
    second = run(rclone_env(rclone_s3, tmp_path / "w2", held, HOOK_ORDER_ID="2"))
    assert second.exit_code == ExitCode.PUBLISH_FAILED
    assert f"s3://rbk/{held}/_claim.json is held by another run (order 7" in second.status_message


BIG = """
    import os

    def process(input_dir, output_dir):
        (output_dir / "big.bin").write_bytes(os.urandom(11 * 1024 * 1024))  # 3 parts of 5 MiB
        (output_dir / "small.txt").write_text("small")
"""


def test_multipart_objects_pass_the_verification_on_moto_and_rclone(
    s3_server, s3, bucket, rclone_s3, tmp_path
) -> None:
    proj = project(tmp_path, BIG)
    s3.put_object(Bucket=bucket, Key="in/x", Body=b"x")
    moto = run(
        env_for(s3_server, bucket, tmp_path / "w1", "in/", "mp", HOOK_PART_SIZE_MB="5"), proj
    )
    assert moto.exit_code == ExitCode.COMPLETED, moto.status_message
    rc = rclone_client(rclone_s3)
    rc.put_object(Bucket="rbk", Key="in/x", Body=b"x")
    other = run(rclone_env(rclone_s3, tmp_path / "w2", "mp", HOOK_PART_SIZE_MB="5"), proj)
    assert other.exit_code == ExitCode.COMPLETED, other.status_message
    for client, name in ((s3, bucket), (rc, "rbk")):
        manifest = json.loads(get(client, name, "mp/_manifest.json"))
        published = sorted(["mp/big.bin", "mp/small.txt", *stac("mp", "big.bin", "small.txt")])
        assert [f["key"] for f in manifest["files"]] == published
        assert keys(client, name, "mp/") == sorted(["mp/_manifest.json", *published])


def test_objects_in_no_manifest_without_a_lease_of_this_order_are_named_not_deleted(
    s3_server, s3, bucket, tmp_path
) -> None:
    s3.put_object(Bucket=bucket, Key="in/example.data", Body=b"abc")
    s3.put_object(Bucket=bucket, Key="out/notes.txt", Body=b"someone's file")
    result = run(env_for(s3_server, bucket, tmp_path / "w", "in/", "out", HOOK_ORDER_ID="42"))
    assert result.exit_code == ExitCode.COMPLETED, result.status_message
    assert result.status_message == (
        "Processing finished successfully (1 objects under the prefix are in no manifest and "
        f"were left as they are: s3://{bucket}/out/notes.txt)"
    )
    assert get(s3, bucket, "out/notes.txt") == b"someone's file"
    assert keys(s3, bucket, "out/") == sorted(
        ["out/_manifest.json", "out/example.data", "out/notes.txt", *stac("out", "example.data")]
    )


def test_an_object_the_store_shows_without_an_etag_is_judged_by_its_size() -> None:
    """rclone serve s3 under load listed and HEADed an object an exec had just written with an
    empty ETag: no evidence of another run. A size of its own still is."""
    from hook_processor._s3.claim import _same

    md5 = hashlib.md5(b"ABC").hexdigest()
    assert _same(3, md5, 3, "")
    assert _same(3, md5, 3, '""')
    assert not _same(3, md5, 4, "")
    assert not _same(3, md5, 3, "f" * 32)
    assert _same(3, md5, 3, f'"{md5}"')
