"""What the result says of the output: the counts publication made; an empty output said aloud."""

from __future__ import annotations

import io
import json
import urllib.request
import uuid
import zipfile

import pytest
from exec_helpers import CANARY, private_env, put_tree, write_processor

from hook_processor import runtime
from hook_processor._log import human_size
from hook_processor.errors import ExitCode
from hook_processor.options import OptionSources

# What the runtime adds beside the two products "data" and "linked": their STAC catalog.
STAC_FILES = ["_stac/data.json", "_stac/linked.json", "catalog.json"]

LINKED = """
    import os

    def process(input_dir, output_dir):
        (output_dir / "data").mkdir()
        (output_dir / "data" / "a.txt").write_bytes(b"0123456789")
        os.symlink("data", output_dir / "linked")  # a folder link inside output_dir: followed
"""


@pytest.fixture
def buckets(s3):
    names = [f"t-{uuid.uuid4().hex[:10]}" for _ in range(2)]
    for name in names:
        s3.create_bucket(Bucket=name)
    put_tree(s3, names[0], "dedl_hello_world/input_file_location/", {"example.data": b"x"})
    return names


def temporary_env(s3_server, in_bucket: str, tmp_bucket: str, work) -> dict[str, str]:
    return private_env(
        s3_server,
        in_bucket,
        "unused",
        work,
        OUTPUT_STORAGE="TEMPORARY",
        HOOK_TEMPORARY_S3_ENDPOINT_URL=s3_server.endpoint_url,
        HOOK_TEMPORARY_S3_BUCKET=tmp_bucket,
        HOOK_TEMPORARY_S3_ACCESS_KEY=s3_server.access_key,
        HOOK_TEMPORARY_S3_SECRET_KEY=CANARY,
    )


def test_private_counts_are_what_was_published_through_an_inner_link(
    s3_server, s3, buckets, tmp_path
) -> None:
    in_bucket, out_bucket = buckets
    project = write_processor(tmp_path, LINKED)
    env = private_env(s3_server, in_bucket, out_bucket, tmp_path / "work")
    stream = io.StringIO()

    result = runtime.run(OptionSources(env=env), project_dir=project, log_stream=stream)

    assert result.exit_code == ExitCode.COMPLETED, stream.getvalue()
    listed = s3.list_objects_v2(Bucket=out_bucket, Prefix="results/run1/")["Contents"]
    published = {o["Key"]: o["Size"] for o in listed if not o["Key"].endswith("_manifest.json")}
    catalog = {k: v for k, v in published.items() if k.endswith(".json")}  # the STAC catalog
    assert sorted(catalog) == [f"results/run1/{name}" for name in STAC_FILES]
    assert {k: v for k, v in published.items() if k not in catalog} == {
        "results/run1/data/a.txt": 10,
        "results/run1/linked/a.txt": 10,
    }
    written = json.loads((tmp_path / "work" / "result.json").read_text())
    total = 20 + sum(catalog.values())
    assert written["Output"] == {"Files": 5, "Bytes": total}
    assert sorted((p["Name"], p["Size"]) for p in written["Products"]) == sorted(
        [("data/a.txt", 10), ("linked/a.txt", 10)]
        + [(k.split("/", 2)[2], v) for k, v in catalog.items()]
    )
    assert f"5 files ({human_size(total)}) out" in stream.getvalue()  # the log says the same


def test_temporary_counts_are_the_zipped_files_and_the_zip_size(
    s3_server, s3, buckets, tmp_path
) -> None:
    in_bucket, tmp_bucket = buckets
    project = write_processor(tmp_path, LINKED)
    stream = io.StringIO()
    env = temporary_env(s3_server, in_bucket, tmp_bucket, tmp_path / "work")

    result = runtime.run(OptionSources(env=env), project_dir=project, log_stream=stream)

    assert result.exit_code == ExitCode.COMPLETED, stream.getvalue()
    data = result.to_json()
    with urllib.request.urlopen(data["DownloadLink"]) as response:  # noqa: S310 - 127.0.0.1
        body = response.read()
    names = sorted(zipfile.ZipFile(io.BytesIO(body)).namelist())
    assert names == sorted(["data/a.txt", "linked/a.txt", *STAC_FILES])
    assert data["Output"] == {"Files": 5, "Bytes": len(body)}
    assert data["ProcessedSize"] == len(body)
    assert f"5 files ({human_size(len(body))}) out" in stream.getvalue()


EMPTY = """
    def process(input_dir, output_dir):
        (input_dir / "example.data").read_bytes()  # reads, writes nothing
"""
EMPTY_MESSAGE = "Processing finished successfully, but process() wrote no output files"


def test_empty_private_output_completes_with_a_warning_and_says_so(
    s3_server, s3, buckets, tmp_path
) -> None:
    in_bucket, out_bucket = buckets
    project = write_processor(tmp_path, EMPTY)
    stream = io.StringIO()
    env = private_env(s3_server, in_bucket, out_bucket, tmp_path / "work")

    result = runtime.run(OptionSources(env=env), project_dir=project, log_stream=stream)

    assert result.exit_code == ExitCode.COMPLETED, stream.getvalue()
    written = json.loads((tmp_path / "work" / "result.json").read_text())
    assert written["Status"] == "completed"
    assert written["StatusMessage"] == EMPTY_MESSAGE
    assert written["Output"] == {"Files": 0, "Bytes": 0}
    warnings = [line for line in stream.getvalue().splitlines() if " WARNING " in line]
    assert len(warnings) == 1
    assert "process() wrote no files into output_dir" in warnings[0]
    assert "a manifest without files" in warnings[0]
    manifest = s3.get_object(Bucket=out_bucket, Key="results/run1/_manifest.json")["Body"].read()
    assert json.loads(manifest)["files"] == []


def test_empty_temporary_output_says_so_too(s3_server, buckets, tmp_path) -> None:
    in_bucket, tmp_bucket = buckets
    project = write_processor(tmp_path, EMPTY)
    env = {
        **temporary_env(s3_server, in_bucket, tmp_bucket, tmp_path / "work"),
        "HOOK_LOG_FORMAT": "json",
    }
    stream = io.StringIO()

    result = runtime.run(OptionSources(env=env), project_dir=project, log_stream=stream)

    assert result.exit_code == ExitCode.COMPLETED, stream.getvalue()
    assert result.to_json()["StatusMessage"] == EMPTY_MESSAGE
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    warnings = [r["message"] for r in records if r["level"] == "WARNING"]
    assert len(warnings) == 1 and "an empty zip" in warnings[0]
