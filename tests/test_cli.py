"""The command line as a whole: the command list, PROJECT_DIR in both forms, exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from test_harness import HELLO_WORLD, SAMPLE

from hook_processor.cli import command_error, main
from hook_processor.s3server import S3Server

EXPECTED = (SAMPLE / "example.data").read_text().upper()

SUMMARIES = {
    "build": "Build the processor's container image.",
    "describe": "Print the workflow entry and its options.",
    "exec": "Run the processor once, as the Hook service does.",
    "export": "Export the processor to another engine (Argo Workflows).",
    "new": "Create a processor project: code, tests, sample, Dockerfile.",
    "order": "Submit, watch, download and cancel Hook orders.",
    "run": "Run the processor locally on files, against S3.",
    "serve": "Serve your processors as a local Hook order service.",
}


@pytest.mark.parametrize("width", [80, 100])
def test_the_command_list_gives_each_command_its_whole_summary(width: int) -> None:
    result = CliRunner().invoke(main, ["--help"], terminal_width=width)

    assert result.exit_code == 0
    listing = result.stdout.split("Commands:\n", 1)[1]
    shown = dict(line.strip().split(None, 1) for line in listing.splitlines() if line.strip())
    assert shown == SUMMARIES
    assert "..." not in listing


def test_run_takes_the_project_as_argument_or_as_project(tmp_path: Path) -> None:
    for n, where in enumerate(([str(HELLO_WORLD)], ["--project", str(HELLO_WORLD)])):
        out = tmp_path / f"out{n}"
        result = CliRunner().invoke(
            main, ["run", *where, "--input", str(SAMPLE), "--output", str(out)]
        )
        assert result.exit_code == 0, result.output
        assert (out / "example.data").read_text() == EXPECTED


def test_both_forms_must_name_the_same_folder(tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    for command in (["run", "--input", str(SAMPLE), "--output", str(tmp_path / "o")], ["exec"]):
        result = CliRunner().invoke(main, [*command, str(HELLO_WORLD), "--project", str(other)])
        assert result.exit_code == 2, result.output
        assert f"PROJECT_DIR {HELLO_WORLD} and --project {other} name different folders" in (
            result.stderr
        )
    assert not (tmp_path / "o").exists()

    # the same folder twice (spelled differently) is fine
    same = CliRunner().invoke(
        main,
        ["run", str(HELLO_WORLD), "--project", f"{HELLO_WORLD}/../hello_world"]
        + ["--input", str(SAMPLE), "--output", str(tmp_path / "same")],
    )
    assert same.exit_code == 0, same.output


def test_exec_takes_the_project_as_argument(s3_server: S3Server, s3: Any, tmp_path: Path) -> None:
    in_bucket, out_bucket = (f"t-{uuid.uuid4().hex[:10]}" for _ in range(2))
    s3.create_bucket(Bucket=in_bucket)
    s3.create_bucket(Bucket=out_bucket)
    s3.put_object(Bucket=in_bucket, Key="in/example.data", Body=b"positional\n")
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(("AWS_", "HOOK_"))}
    env.update(
        SOURCE_S3_ENDPOINT_URL=s3_server.endpoint_url,
        SOURCE_S3_PATH=f"s3://{in_bucket}/in/",
        SOURCE_S3_ACCESS_KEY=s3_server.access_key,
        SOURCE_S3_SECRET_KEY=s3_server.secret_key,
        OUTPUT_S3_PATH=f"s3://{out_bucket}/res",
        OUTPUT_S3_ACCESS_KEY=s3_server.access_key,
        OUTPUT_S3_SECRET_KEY=s3_server.secret_key,
        HOOK_WORK_DIR=str(tmp_path / "work"),
    )
    child = subprocess.run(
        [sys.executable, "-m", "hook_processor", "exec", str(HELLO_WORLD)],
        cwd=tmp_path,  # not the project: only the argument names it
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert child.returncode == 0, child.stderr
    body = s3.get_object(Bucket=out_bucket, Key="res/example.data")["Body"].read()
    assert body == b"POSITIONAL\n"


@pytest.mark.parametrize("code", [2, 3, 4, 5, 6])
def test_a_command_error_exits_with_its_code(code: int) -> None:
    import click

    @click.command()
    def failing() -> None:
        raise command_error("it went wrong", code)

    result = CliRunner().invoke(failing, [])
    assert result.exit_code == code
    assert result.stderr == "Error: it went wrong\n"
