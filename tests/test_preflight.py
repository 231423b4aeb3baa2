"""``hook-processor run`` checks everything it can before it moves any data (issue 10, item 9).

A broken project, an option the runtime would refuse, or a dead Docker engine is reported with
exit 2 before a single input byte is uploaded: the bucket stays empty, no "uploaded" line.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from hook_processor import harness
from hook_processor.cli import main
from hook_processor.s3server import S3Server

SAMPLE = Path(__file__).resolve().parent.parent / "examples" / "hello_world" / "sample" / "input"

BROKEN = {
    "syntax error": (
        "def process(input_dir, output_dir)\n    pass\n",
        {},
        "SyntaxError",
    ),
    "wrong signature": (
        "def process(input_dir):\n    pass\n",
        {},
        "has the wrong signature",
    ),
    "refused option value": (
        textwrap.dedent("""
            from hook_processor import Options

            class Settings(Options):
                threshold: int = 1

            def process(input_dir, output_dir, options: Settings):
                pass
        """),
        {"threshold": "not-a-number"},
        "threshold",
    ),
}


def project(root: Path, source: str) -> Path:
    folder = root / "proj"
    folder.mkdir()
    (folder / "checked_proc.py").write_text(source)
    (folder / "pyproject.toml").write_text(
        '[tool.hook-processor]\nname = "checked"\nentrypoint = "checked_proc:process"\n'
    )
    return folder


def inputs(root: Path) -> Path:
    folder = root / "in"
    folder.mkdir()
    for i in range(3):
        (folder / f"f{i}.txt").write_text(f"input {i}\n")
    return folder


@pytest.mark.parametrize("mode", ["inprocess", "subprocess"])
@pytest.mark.parametrize("case", list(BROKEN))
def test_a_project_the_runtime_refuses_uploads_nothing(
    tmp_path, s3_server: S3Server, s3, bucket: str, mode: str, case: str
) -> None:
    source, options, expected = BROKEN[case]
    lines: list[str] = []
    outcome = harness.run(
        harness.RunRequest(
            output_dir=tmp_path / "out",
            project_dir=project(tmp_path, source),
            inputs=[inputs(tmp_path)],
            options={"input_s3_path": f"s3://{bucket}/in/", "s3_bucket": bucket, **options},
            endpoint=s3_server,  # the user's S3: what was uploaded stays visible after the run
            mode=mode,
            notify=lines.append,
        )
    )
    assert outcome.exit_code == 2, outcome.logs
    assert outcome.status == "failed"
    assert expected in outcome.result["StatusMessage"]
    assert outcome.uploaded_files == 0
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads") is None
    assert not any(line.startswith("uploaded ") for line in lines), lines
    assert "the runtime would refuse this run (exit 2): nothing was uploaded" in lines
    assert outcome.files == {}


def test_cli_syntax_error_exit_2_without_an_upload(tmp_path) -> None:
    result = CliRunner().invoke(
        main,
        [
            "run",
            str(project(tmp_path, BROKEN["syntax error"][0])),
            "--input",
            str(inputs(tmp_path)),
            "--output",
            str(tmp_path / "out"),
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 2, result.output
    assert "SyntaxError" in result.stderr
    assert "hook-processor run: uploaded" not in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("Error: entrypoint checked_proc")


def test_cli_dead_docker_host_exit_2_before_the_upload(tmp_path) -> None:
    result = CliRunner().invoke(
        main,
        [
            "run",
            str(project(tmp_path, "def process(input_dir, output_dir):\n    pass\n")),
            "--input",
            str(SAMPLE),
            "--output",
            str(tmp_path / "out"),
            "--mode",
            "container",
        ],
        env={"DOCKER_HOST": f"unix://{tmp_path}/none.sock"},
        catch_exceptions=False,
    )
    assert result.exit_code == 2, result.output
    assert f"Error: no Docker engine answers at unix://{tmp_path}/none.sock" in result.stderr
    assert "hook-processor run: uploaded" not in result.stderr
