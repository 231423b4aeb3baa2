"""The runtime end to end against a real moto server: hello_world, failures, exit codes, secrets."""

from __future__ import annotations

import io
import json
import signal
import time
import urllib.parse
import urllib.request
import uuid
import zipfile

import pytest
from exec_helpers import CANARY, HELLO_WORLD, exec_command, private_env, put_tree, write_processor

from hook_processor import runtime
from hook_processor.errors import ExitCode
from hook_processor.options import OptionSources


@pytest.fixture
def buckets(s3):
    names = [f"t-{uuid.uuid4().hex[:10]}" for _ in range(2)]
    for name in names:
        s3.create_bucket(Bucket=name)
    return names


def test_hello_world_private_round_trip(s3_server, s3, buckets, tmp_path, capsys) -> None:
    in_bucket, out_bucket = buckets
    put_tree(
        s3,
        in_bucket,
        "dedl_hello_world/input_file_location/",
        {"example.data": b"hello, world\n", "sub/more.txt": "grüße\n".encode()},
    )
    env = private_env(s3_server, in_bucket, out_bucket, tmp_path / "work", HOOK_ORDER_ID="42")

    result = runtime.run(OptionSources(env=env), project_dir=HELLO_WORLD)

    assert result.exit_code == ExitCode.COMPLETED, result.status_message
    got = s3.get_object(Bucket=out_bucket, Key="results/run1/example.data")["Body"].read()
    assert got == b"HELLO, WORLD\n"
    assert (
        s3.get_object(Bucket=out_bucket, Key="results/run1/sub/more.txt")["Body"].read()
        == "GRÜSSE\n".encode()
    )
    manifest = json.loads(
        s3.get_object(Bucket=out_bucket, Key="results/run1/_manifest.json")["Body"].read()
    )
    assert sorted(f["key"] for f in manifest["files"]) == [
        "results/run1/_stac/example.data.json",  # the STAC catalog: one item per product
        "results/run1/_stac/sub.json",
        "results/run1/catalog.json",
        "results/run1/example.data",
        "results/run1/sub/more.txt",
    ]
    written = json.loads((tmp_path / "work" / "result.json").read_text())
    assert written["Status"] == "completed"
    assert written["StatusMessage"] == "Processing finished successfully"
    assert written["ExitCode"] == 0
    assert written["OrderId"] == "42"
    assert written["Input"] == {
        "Files": 2,
        "Bytes": len(b"hello, world\n") + len("grüße\n".encode()),
    }
    assert written["Output"]["Files"] == 5
    assert written["Manifest"] == f"s3://{out_bucket}/results/run1/_manifest.json"
    assert {p["Name"] for p in written["Products"]} == {
        "example.data",
        "sub/more.txt",
        "catalog.json",
        "_stac/example.data.json",
        "_stac/sub.json",
    }
    assert set(written["Timings"]) >= {"load", "stage_in", "process", "catalog", "publish"}
    err = capsys.readouterr().err
    assert "upper-cased example.data" in err
    assert CANARY not in err + json.dumps(written) + json.dumps(manifest)


def test_hello_world_temporary_zip_through_download_link(s3_server, s3, buckets, tmp_path) -> None:
    in_bucket, tmp_bucket = buckets
    put_tree(s3, in_bucket, "dedl_hello_world/input_file_location/", {"example.data": b"abc"})
    env = private_env(
        s3_server,
        in_bucket,
        "unused",
        tmp_path / "work",
        OUTPUT_STORAGE="TEMPORARY",
        HOOK_TEMPORARY_S3_ENDPOINT_URL=s3_server.endpoint_url,
        HOOK_TEMPORARY_S3_BUCKET=tmp_bucket,
        HOOK_TEMPORARY_S3_ACCESS_KEY=s3_server.access_key,
        HOOK_TEMPORARY_S3_SECRET_KEY=CANARY,
    )

    result = runtime.run(OptionSources(env=env), project_dir=HELLO_WORLD)

    assert result.exit_code == ExitCode.COMPLETED, result.status_message
    data = result.to_json()
    assert data["ProcessedName"].endswith(".zip") and data["ProcessedName"].split("_")[1] == "local"
    link = data["DownloadLink"]
    assert link.startswith(s3_server.endpoint_url)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)
    if "X-Amz-Expires" in query:  # SigV4
        assert query["X-Amz-Expires"] == ["1209600"]
    else:  # SigV2 carries the absolute expiry time
        assert abs(int(query["Expires"][0]) - (time.time() + 14 * 24 * 3600)) < 300
    with urllib.request.urlopen(link) as response:  # noqa: S310 - 127.0.0.1 only
        archive = zipfile.ZipFile(io.BytesIO(response.read()))
    assert archive.read("example.data") == b"ABC"
    assert data["ProcessedSize"] == len(
        s3.get_object(Bucket=tmp_bucket, Key=data["ProcessedName"])["Body"].read()
    )


def test_raising_process_exit_4_with_trimmed_traceback(
    s3_server, s3, buckets, tmp_path, capsys
) -> None:
    in_bucket, out_bucket = buckets
    put_tree(s3, in_bucket, "dedl_hello_world/input_file_location/", {"example.data": b"x"})
    project = write_processor(
        tmp_path,
        """
        def helper(path):
            raise ValueError(f"cannot read {path.name}")

        def process(input_dir, output_dir):
            (output_dir / "partial.txt").write_text("half")
            helper(input_dir / "example.data")
    """,
    )
    env = private_env(s3_server, in_bucket, out_bucket, tmp_path / "work")

    result = runtime.run(OptionSources(env=env), project_dir=project)

    assert result.exit_code == ExitCode.PROCESS_FAILED
    assert result.status == "failed"
    assert result.status_message == "process() raised ValueError: cannot read example.data"
    err = capsys.readouterr().err
    assert "in helper" in err and "in process" in err
    assert "hook_processor/runtime.py" not in err
    listed = s3.list_objects_v2(Bucket=out_bucket).get("Contents", [])
    assert listed == []  # nothing published, no manifest
    assert json.loads((tmp_path / "work" / "result.json").read_text())["ExitCode"] == 4


def test_bad_options_exit_2_before_any_io(tmp_path, capsys) -> None:
    env = {
        "SOURCE_S3_PATH": "s3://inb/x/",
        "OUTPUT_S3_SECRET_KEY": CANARY,
        "HOOK_WORK_DIR": str(tmp_path / "work"),
    }
    result = runtime.run(OptionSources(env=env), project_dir=HELLO_WORLD)
    assert result.exit_code == ExitCode.BAD_OPTIONS
    err = capsys.readouterr().err
    assert "s3_bucket (or output_s3_path): required" in err
    assert CANARY not in err
    assert not (tmp_path / "work" / "input").exists()
    assert json.loads((tmp_path / "work" / "result.json").read_text())["Status"] == "failed"


def test_unreachable_input_is_a_staging_failure(s3_server, buckets, tmp_path) -> None:
    env = private_env(
        s3_server,
        "inb",
        buckets[1],  # the output side passes its preflight: the input is what fails
        tmp_path / "work",
        SOURCE_S3_ENDPOINT_URL="http://127.0.0.1:9",
        HOOK_S3_MAX_ATTEMPTS="1",
    )
    result = runtime.run(OptionSources(env=env), project_dir=HELLO_WORLD)
    assert result.exit_code == ExitCode.STAGING_FAILED
    assert "127.0.0.1:9" in result.status_message


def test_work_dir_with_foreign_files_is_refused(s3_server, tmp_path) -> None:
    (tmp_path / "work" / "input").mkdir(parents=True)
    (tmp_path / "work" / "input" / "precious.txt").write_text("keep me")
    result = runtime.run(
        OptionSources(env=private_env(s3_server, "inb", "out", tmp_path / "work")),
        project_dir=HELLO_WORLD,
    )
    assert result.exit_code == ExitCode.BAD_OPTIONS
    assert "did not create" in result.status_message
    assert (tmp_path / "work" / "input" / "precious.txt").read_text() == "keep me"


def test_exec_command_runs_hello_world(s3_server, s3, buckets, tmp_path) -> None:
    in_bucket, out_bucket = buckets
    put_tree(s3, in_bucket, "dedl_hello_world/input_file_location/", {"example.data": b"exec\n"})
    env = private_env(s3_server, in_bucket, out_bucket, tmp_path / "work")
    env["SOURCE_S3_SECRET_KEY"] = "wrong-but-overridden"
    child = exec_command(
        env, "--project", str(HELLO_WORLD), "--option", f"source_s3_secret_key={CANARY}"
    )
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    assert (
        s3.get_object(Bucket=out_bucket, Key="results/run1/example.data")["Body"].read()
        == b"EXEC\n"
    )
    assert "completed" in err and CANARY not in out + err


def test_exec_json_logs(s3_server, tmp_path) -> None:
    env = {"HOOK_LOG_FORMAT": "json", "HOOK_WORK_DIR": str(tmp_path / "work")}
    child = exec_command(env, "--project", str(HELLO_WORLD))
    _, err = child.communicate(timeout=60)
    assert child.returncode == 2
    lines = [json.loads(line) for line in err.splitlines()]
    assert any(line["level"] == "ERROR" and "input_s3_path" in line["message"] for line in lines)


def test_sigterm_during_process_exit_6_nothing_published(s3_server, s3, buckets, tmp_path) -> None:
    in_bucket, out_bucket = buckets
    put_tree(s3, in_bucket, "dedl_hello_world/input_file_location/", {"example.data": b"x"})
    project = write_processor(
        tmp_path,
        """
        import time

        def process(input_dir, output_dir):
            (output_dir / "out.txt").write_text("started")
            print("PROCESS-STARTED", flush=True)
            time.sleep(60)
    """,
    )
    env = private_env(s3_server, in_bucket, out_bucket, tmp_path / "work")
    child = exec_command(env, "--project", str(project))
    assert child.stdout.readline().strip() == "PROCESS-STARTED"
    child.send_signal(signal.SIGTERM)
    started = time.monotonic()
    _, err = child.communicate(timeout=30)
    assert child.returncode == 6, err
    assert time.monotonic() - started < 20
    assert "cancelled by SIGTERM" in err
    assert s3.list_objects_v2(Bucket=out_bucket).get("KeyCount", 0) == 0
    assert json.loads((tmp_path / "work" / "result.json").read_text())["Status"] == "cancelled"
