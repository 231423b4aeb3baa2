"""``hook-processor run``: CliRunner for stdout/stderr/exit code, and one real subprocess."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_harness import CANARY, HELLO_WORLD, SAMPLE, SEED_ORDER, SEED_REPLACED, refuses_connections

from hook_processor.cli import main
from hook_processor.s3server import S3Server

EXPECTED = (SAMPLE / "example.data").read_text().upper()


def installed_command() -> str:
    """The hook-processor script installed for the interpreter that runs the tests (its venv's
    bin folder need not be on PATH)."""
    for folder in (Path(sysconfig.get_path("scripts")), Path(sys.executable).parent):
        if (folder / "hook-processor").is_file():
            return str(folder / "hook-processor")
    raise AssertionError(
        f"no hook-processor script next to {sys.executable} (pip install -e '.[dev]')"
    )


def invoke(*args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, ["run", *args], env=env, catch_exceptions=False)


def failing_project(tmp_path: Path) -> Path:
    project = tmp_path / "failing"
    project.mkdir()
    (project / "failing_cli_proc.py").write_text(
        textwrap.dedent("""
        def process(input_dir, output_dir):
            (output_dir / "partial.txt").write_text("half")
            raise ValueError("cannot finish")
    """)
    )
    (project / "pyproject.toml").write_text(
        '[tool.hook-processor]\nname = "failing"\nentrypoint = "failing_cli_proc:process"\n'
    )
    return project


def test_hello_world_summary_and_upper_cased_output(tmp_path) -> None:
    out = tmp_path / "out"
    result = invoke(str(HELLO_WORLD), "--input", str(SAMPLE), "--output", str(out))

    assert result.exit_code == 0, result.stderr
    assert (out / "example.data").read_text() == EXPECTED
    assert (out / "_manifest.json").is_file()
    assert result.stdout.startswith(
        "hook-processor run: completed (exit code 0): Processing finished successfully"
    )
    assert "example.data (and _manifest.json)" in result.stdout
    assert re.search(r"phases +load .* stage_in .* process .* publish .* total", result.stdout)
    assert "input    1 file" in result.stdout
    assert "upper-cased example.data" in result.stderr  # the run's log
    assert "upper-cased" not in result.stdout


def test_json_prints_the_result(tmp_path) -> None:
    result = invoke(
        str(HELLO_WORLD),
        "-i",
        str(SAMPLE),
        "--output",
        str(tmp_path / "out"),
        "--json",
        "--output-storage",
        "temporary",
        "--mode",
        "subprocess",
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["Status"] == "completed" and data["OutputStorage"] == "TEMPORARY"
    assert (tmp_path / "out" / "example.data").read_text() == EXPECTED
    assert (tmp_path / "out" / data["ProcessedName"]).is_file()


def test_seed_order_body_through_options_file_reports_replaced_names(tmp_path) -> None:
    order = tmp_path / "order.json"
    order.write_text(json.dumps(SEED_ORDER))
    result = invoke(
        str(HELLO_WORLD),
        "-i",
        str(SAMPLE),
        "--output",
        str(tmp_path / "out"),
        "--options-file",
        str(order),
    )

    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "out" / "example.data").read_text() == EXPECTED
    reported = re.search(r"options file: replaced (.*) with the embedded S3", result.stderr)
    assert reported and sorted(reported.group(1).split(", ")) == sorted(SEED_REPLACED)
    assert "replaced " in result.stdout
    assert CANARY not in result.stdout + result.stderr
    assert "OUT-AK" not in result.stdout + result.stderr


def test_failing_processor_exit_4_partial_output_and_one_message(tmp_path) -> None:
    out = tmp_path / "out"
    result = invoke(str(failing_project(tmp_path)), "-i", str(SAMPLE), "--output", str(out))

    assert result.exit_code == 4
    assert result.stdout.startswith("hook-processor run: failed (exit code 4)")
    assert "NOT published" in result.stdout and "partial.txt" in result.stdout
    assert (
        result.stderr.rstrip().splitlines()[-1]
        == "Error: process() raised ValueError: cannot finish"
    )
    assert (out / "partial.txt").read_text() == "half"
    assert json.loads((out / ".hook-processor-run.json").read_text())["ExitCode"] == 4
    endpoint = re.search(r"embedded S3 server at (\S+)", result.stderr).group(1)
    assert refuses_connections(endpoint)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["{tmp}/missing", "-i", str(SAMPLE)],
            "Error: project folder {tmp}/missing does not exist",
        ),
        (["{tmp}", "-i", str(SAMPLE)], "Error: {tmp} has no pyproject.toml"),
        (
            [str(HELLO_WORLD), "-i", "{tmp}/nothing"],
            "Error: --input {tmp}/nothing: no such file or folder",
        ),
    ],
)
def test_bad_input_one_clear_message_exit_2(tmp_path, args, message) -> None:
    result = invoke(*[a.format(tmp=tmp_path) for a in args], "--output", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith(message.format(tmp=tmp_path))
    assert len(result.stderr.strip().splitlines()) == 1


def test_unreachable_s3_endpoint_exit_3(tmp_path) -> None:
    result = invoke(
        str(HELLO_WORLD),
        "-i",
        str(SAMPLE),
        "--output",
        str(tmp_path / "out"),
        "--s3-endpoint",
        "http://127.0.0.1:9",
        "--s3-access-key",
        "ak",
        "--s3-secret-key",
        CANARY,
        "-o",
        "input_s3_path=s3://inb/x/",
        "-o",
        "s3_bucket=outb",  # valid options: they are checked before the upload
        env={"HOOK_S3_MAX_ATTEMPTS": "1"},
    )
    assert result.exit_code == 3
    assert result.stdout == ""
    assert result.stderr.startswith(
        "Error: could not upload the input to s3://inb/x/example.data on http://127.0.0.1:9"
    )
    assert CANARY not in result.stderr


def test_usage_errors(tmp_path) -> None:
    result = invoke(
        str(HELLO_WORLD), "-i", str(SAMPLE), "--output", str(tmp_path / "o"), "--s3-access-key", "k"
    )
    assert result.exit_code == 2 and "go with --s3-endpoint" in result.stderr
    result = invoke(
        str(HELLO_WORLD),
        "-i",
        str(SAMPLE),
        "--output",
        str(tmp_path / "o"),
        "--output-storage",
        "cloud",
    )
    assert result.exit_code == 2 and "must be PRIVATE or TEMPORARY" in result.stderr


def test_installed_command_runs_hello_world_as_the_readme_says(tmp_path) -> None:
    executable = installed_command()
    shutil.copytree(
        HELLO_WORLD, tmp_path / "hello_world", ignore=shutil.ignore_patterns("__pycache__")
    )
    done = subprocess.run(
        [
            executable,
            "run",
            "hello_world",
            "--input",
            "hello_world/sample/input",
            "--output",
            "out",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "example.data").read_text() == EXPECTED
    assert "completed" in done.stdout
    assert "outputs  out/: _stac/example.data.json, catalog.json, example.data" in done.stdout


def test_keep_server_prints_endpoint_and_stops_on_ctrl_c(tmp_path) -> None:
    child = subprocess.Popen(
        [
            installed_command(),
            "run",
            str(HELLO_WORLD),
            "-i",
            str(SAMPLE),
            "--output",
            str(tmp_path / "out"),
            "--keep-server",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        shown = []
        for line in child.stdout:
            shown.append(line)
            if line.startswith("Press Ctrl-C"):
                break
        text = "".join(shown)
        endpoint = re.search(r"endpoint +(http://127\.0\.0\.1:\d+)", text).group(1)
        server = S3Server(endpoint, "hook-local-access", "hook-local-secret")
        listed = server.client().list_objects_v2(Bucket="hook-output")["Contents"]
        assert any(o["Key"].endswith("/example.data") for o in listed)
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 0, err
    assert refuses_connections(endpoint)
