"""Logs cannot be forged by names: control characters in a key, a file or an option name are
escaped in the text log (one line per record), and JSON lines stay one line each."""

from __future__ import annotations

import io
import json
import re
import textwrap
import uuid
from pathlib import Path

import pytest
from exec_helpers import private_env, put_tree, write_processor

from hook_processor import runtime
from hook_processor._catalog import item_file_name
from hook_processor.errors import ExitCode
from hook_processor.options import OptionSources

FAKE = "2026-01-01T00:00:00Z INFO    completed: fake"
# A key whose second line is a record of ours. Moto's server refuses "\n" in a key (404), so
# the key carries "\r", a line break too (for str.splitlines(), and for a terminal, which
# overwrites the line); "\n" comes through an option's name and an exception's message.
KEY = f"a\r{FAKE}"
ESC_NAME = "x\x1b[2Jy\r.txt"  # clears a terminal, returns the cursor
RECORD = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (DEBUG|INFO|WARNING|ERROR)\s")

PROCESSOR = """
    def process(input_dir, output_dir, context):
        for source in sorted(p for p in input_dir.rglob("*") if p.is_file()):
            name = source.relative_to(input_dir)
            (output_dir / name).write_bytes(source.read_bytes().upper())
            context.logger.info("copied %s", name)
        (output_dir / ESC_NAME).write_text("esc")
        context.logger.info("wrote " + ESC_NAME)  # the name inside the message itself
"""


@pytest.fixture
def buckets(s3) -> list[str]:
    names = [f"t-{uuid.uuid4().hex[:10]}" for _ in range(2)]
    for name in names:
        s3.create_bucket(Bucket=name)
    put_tree(s3, names[0], "dedl_hello_world/input_file_location/", {KEY: b"forged\n"})
    return names


def _project(tmp_path: Path, body: str) -> Path:
    return write_processor(tmp_path, f"ESC_NAME = {ESC_NAME!r}\n" + textwrap.dedent(body))


def _run(env: dict[str, str], project: Path, **sources) -> tuple[runtime.RunResult, str]:
    stream = io.StringIO()
    result = runtime.run(OptionSources(env=env, **sources), project_dir=project, log_stream=stream)
    return result, stream.getvalue()


def test_key_and_file_names_with_control_characters_cannot_forge_text_log_lines(
    s3_server, s3, buckets, tmp_path
) -> None:
    options = tmp_path / "options.json"
    options.write_text(json.dumps({f"bogus\n{FAKE}": "1"}))  # an unknown option is named
    env = private_env(
        s3_server, *buckets, tmp_path / "work", HOOK_LOG_LEVEL="DEBUG", HOOK_LOG_FORMAT="text"
    )

    result, log = _run(env, _project(tmp_path, PROCESSOR), file=options)

    assert result.exit_code == ExitCode.COMPLETED, result.status_message
    lines = log.splitlines()
    assert lines and all(RECORD.match(line) for line in lines), log
    assert not any(line.startswith(FAKE) for line in lines)
    assert "\x1b" not in log and "\r" not in log
    assert sum(f"copied a\\r{FAKE}" in line for line in lines) == 1  # escaped, still readable
    assert sum("wrote x\\x1b[2Jy\\r.txt" in line for line in lines) == 1
    assert sum(f"bogus\\n{FAKE}" in line and "WARNING" in line for line in lines) == 1
    # The names themselves are untouched: published and recorded byte for byte.
    out = buckets[1]
    assert s3.get_object(Bucket=out, Key=f"results/run1/{KEY}")["Body"].read() == b"FORGED\n"
    assert s3.get_object(Bucket=out, Key=f"results/run1/{ESC_NAME}")["Body"].read() == b"esc"
    written = json.loads((tmp_path / "work" / "result.json").read_text())
    # Their STAC items: file names without the control characters (hrefs would lose them).
    stac = {"catalog.json", *(f"_stac/{item_file_name(n)}" for n in (KEY, ESC_NAME))}
    assert not any("\r" in n or "\x1b" in n for n in stac)
    assert {p["Name"] for p in written["Products"]} == {KEY, ESC_NAME, *stac}


def test_json_log_lines_stay_one_record_each_and_keep_the_names(
    s3_server, buckets, tmp_path
) -> None:
    env = private_env(s3_server, *buckets, tmp_path / "work", HOOK_LOG_FORMAT="json")
    body = textwrap.dedent(PROCESSOR) + '    context.logger.info("nel\\x85ls\\u2028end")\n'

    result, log = _run(env, _project(tmp_path, body))

    assert result.exit_code == ExitCode.COMPLETED, result.status_message
    assert "\x85" not in log and "\u2028" not in log and "\x1b" not in log
    records = [json.loads(line) for line in log.splitlines()]  # every line is one record
    messages = [r["message"] for r in records]
    assert f"copied {KEY}" in messages and f"wrote {ESC_NAME}" in messages
    assert "nel\x85ls\u2028end" in messages


def test_author_traceback_keeps_its_lines_but_not_a_forged_one(
    s3_server, buckets, tmp_path
) -> None:
    body = """
    def helper(name):
        raise ValueError(f"cannot read {name}\\n{name}")

    def process(input_dir, output_dir):
        for source in input_dir.iterdir():
            helper(source.name)
    """
    env = private_env(s3_server, *buckets, tmp_path / "work")

    result, log = _run(env, _project(tmp_path, body))

    assert result.exit_code == ExitCode.PROCESS_FAILED
    assert result.status_message == f"process() raised ValueError: cannot read {KEY}\n{KEY}"
    lines = log.splitlines()
    assert not any(line.startswith(FAKE) for line in lines)
    error = next(i for i, line in enumerate(lines) if " ERROR " in line)
    escaped = f"cannot read a\\r{FAKE}\\na\\r{FAKE}"
    assert lines[error].endswith(f"process() raised ValueError: {escaped}")
    # The traceback follows the message as lines of its own, indented, readable as Python's.
    assert lines[error + 1] == "  Traceback (most recent call last):"
    assert lines[error + 2].startswith("    File ") and "in process" in lines[error + 2]
    assert any(line.strip().startswith('raise ValueError(f"cannot read') for line in lines)
    assert f"  ValueError: cannot read a\\r{FAKE}" in lines and f"  a\\r{FAKE}" in lines
    assert all(RECORD.match(line) or line.startswith("  ") for line in lines), log


def test_indented_lines_of_a_message_are_kept(tmp_path) -> None:
    # Our error listings put each problem on an indented line of its own: those stay lines.
    env = {"SOURCE_S3_PATH": "s3://in/x/", "HOOK_WORK_DIR": str(tmp_path / "work")}

    result, log = _run(env, _project(tmp_path, "def process(input_dir, output_dir): pass\n"))

    assert result.exit_code == ExitCode.BAD_OPTIONS
    lines = log.splitlines()
    assert any(RECORD.match(line) and line.endswith("nothing was transferred:") for line in lines)
    assert any(line.startswith("  - s3_bucket (or output_s3_path): required") for line in lines)
