"""A bad HOOK_WORK_DIR is the platform's configuration: exit 2 naming it, nothing followed."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest
from exec_helpers import HELLO_WORLD, private_env, put_tree, write_processor

from hook_processor import runtime
from hook_processor.errors import ExitCode
from hook_processor.options import OptionSources

INPUT_PREFIX = "dedl_hello_world/input_file_location/"


@pytest.fixture
def buckets(s3) -> list[str]:
    names = [f"t-{uuid.uuid4().hex[:10]}" for _ in range(2)]
    for name in names:
        s3.create_bucket(Bucket=name)
    return names


@pytest.fixture
def order(s3_server, s3, buckets):
    """Input and output buckets with one input file; returns a function making the env."""
    in_bucket, out_bucket = buckets
    put_tree(s3, in_bucket, INPUT_PREFIX, {"example.data": b"hello\n"})

    def env(work: Path | str, **extra: str) -> dict[str, str]:
        return private_env(s3_server, in_bucket, out_bucket, Path(work), **extra)

    return env


def _published(s3, bucket: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def _run_refused(env: dict[str, str], capsys, result_path: Path) -> tuple[str, dict]:
    result = runtime.run(OptionSources(env=env), project_dir=HELLO_WORLD)
    err = capsys.readouterr().err
    assert result.exit_code == ExitCode.BAD_OPTIONS, result.status_message
    assert "Traceback" not in err and "internal error" not in err
    written = json.loads(result_path.read_text())
    assert written["Status"] == "failed" and written["ExitCode"] == 2
    assert written["StatusMessage"] == result.status_message
    assert result.status_message in err  # one line, logged as it is recorded
    assert "\n" not in result.status_message
    return result.status_message, written


def test_work_dir_that_cannot_be_created_is_exit_2(order, s3, buckets, tmp_path, capsys) -> None:
    # Tests run as root, so no permission denial: a regular file as the parent stops mkdir.
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    work = blocker / "work"
    result_path = tmp_path / "result.json"

    message, _ = _run_refused(order(work, HOOK_RESULT_PATH=str(result_path)), capsys, result_path)

    assert message.startswith(f"HOOK_WORK_DIR {work}: cannot be prepared: Not a directory")
    assert "HOOK_WORK_DIR at a folder" in message
    assert blocker.read_text() == "a file, not a folder"
    assert _published(s3, buckets[1]) == []


def test_work_dir_that_is_a_file_is_exit_2(order, s3, buckets, tmp_path, capsys) -> None:
    work = tmp_path / "work"
    work.write_text("keep")
    result_path = tmp_path / "out" / "result.json"

    message, _ = _run_refused(order(work, HOOK_RESULT_PATH=str(result_path)), capsys, result_path)

    assert message == f"HOOK_WORK_DIR {work}: is not a folder (a file is in the way)"
    assert work.read_text() == "keep"
    assert _published(s3, buckets[1]) == []


@pytest.mark.parametrize("name", ["input", "output"])
@pytest.mark.parametrize("marker", [True, False], ids=["marked", "unmarked"])
@pytest.mark.parametrize("target_files", [True, False], ids=["full-target", "empty-target"])
def test_symlinked_input_or_output_is_refused_and_not_followed(
    order, s3, buckets, tmp_path, capsys, name, marker, target_files
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    if marker:  # a work dir an earlier run prepared: the runtime would empty its folders
        (work / ".hook-processor-workdir").touch()
    target = tmp_path / "elsewhere"
    target.mkdir()
    if target_files:
        (target / "precious.txt").write_text("keep me")
    (work / name).symlink_to(target, target_is_directory=True)
    result_path = work / "result.json"

    message, _ = _run_refused(order(work), capsys, result_path)

    assert message.startswith(f"HOOK_WORK_DIR {work}: {name} is a symbolic link (to {target})")
    assert (work / name).is_symlink()
    expected = {"precious.txt": "keep me"} if target_files else {}
    assert {p.name: p.read_text() for p in target.iterdir()} == expected
    assert _published(s3, buckets[1]) == []


def test_relative_work_dir_and_chdir_in_process_still_publish(
    order, s3, buckets, tmp_path, monkeypatch
) -> None:
    project = write_processor(
        tmp_path,
        """
        import os

        def process(input_dir, output_dir):
            data = (input_dir / "example.data").read_bytes()
            os.chdir(os.environ["ELSEWHERE"])
            (output_dir / "out.txt").write_bytes(data.upper())
            (output_dir / "abs.txt").write_text(str(input_dir.is_absolute()))
    """,
    )
    cwd, elsewhere = tmp_path / "cwd", tmp_path / "elsewhere"
    cwd.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("ELSEWHERE", str(elsewhere))

    result = runtime.run(OptionSources(env=order("work")), project_dir=project)

    assert result.exit_code == ExitCode.COMPLETED, result.status_message
    out_bucket = buckets[1]
    body = s3.get_object(Bucket=out_bucket, Key="results/run1/out.txt")["Body"].read()
    assert body == b"HELLO\n"
    assert s3.get_object(Bucket=out_bucket, Key="results/run1/abs.txt")["Body"].read() == b"True"
    assert json.loads((cwd / "work" / "result.json").read_text())["Status"] == "completed"
    assert not (elsewhere / "work").exists()
    assert os.getcwd() == str(elsewhere)  # process() really moved; monkeypatch restores it
