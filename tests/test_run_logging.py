"""The author's own loggers in the run log: formatted, redacted, levelled; state restored after."""

from __future__ import annotations

import io
import json
import logging
import uuid

import pytest
from exec_helpers import CANARY, exec_command, private_env, put_tree, write_processor

from hook_processor import runtime
from hook_processor.errors import ExitCode
from hook_processor.options import OptionSources

AUTHOR = """
    import logging

    from pydantic import SecretStr

    from hook_processor import Options

    log = logging.getLogger("author")

    class Opts(Options):
        api_token: SecretStr

    def process(input_dir, output_dir, options: Opts):
        log.debug("author debug line")
        log.info("author info line")
        log.warning("author warning: the token is %s", options.api_token.get_secret_value())
        logging.getLogger("botocore.fake").info("library noise line")
        (output_dir / "out.txt").write_text("x")
"""


@pytest.fixture
def setup(s3_server, s3, tmp_path):
    """(project, env) of a run of AUTHOR against the session's S3 server."""
    in_bucket, out_bucket = (f"t-{uuid.uuid4().hex[:10]}" for _ in range(2))
    for name in (in_bucket, out_bucket):
        s3.create_bucket(Bucket=name)
    put_tree(s3, in_bucket, "dedl_hello_world/input_file_location/", {"example.data": b"x"})
    project = write_processor(tmp_path, AUTHOR)
    env = private_env(s3_server, in_bucket, out_bucket, tmp_path / "work", API_TOKEN=CANARY)
    return project, env


def again(env: dict[str, str], n: int) -> dict[str, str]:
    """``env`` for another run: its own work folder and output prefix."""
    return {
        **env,
        "HOOK_WORK_DIR": f"{env['HOOK_WORK_DIR']}-{n}",
        "OUTPUT_S3_PATH": f"{env['OUTPUT_S3_PATH']}-{n}",
    }


def run_logged(project, env) -> tuple[runtime.RunResult, str]:
    stream = io.StringIO()
    result = runtime.run(OptionSources(env=env), project_dir=project, log_stream=stream)
    assert result.exit_code == ExitCode.COMPLETED, stream.getvalue()
    return result, stream.getvalue()


def test_author_logger_reaches_the_text_run_log_redacted(setup) -> None:
    project, env = setup
    _, text = run_logged(project, env)
    lines = text.splitlines()
    info = [line for line in lines if "author info line" in line]
    assert len(info) == 1
    assert " INFO    author: author info line" in info[0]  # our format, named after its logger
    warning = next(line for line in lines if "author warning" in line)
    assert " WARNING author: author warning: the token is **********" in warning
    assert CANARY not in text
    assert "author debug line" not in text  # HOOK_LOG_LEVEL defaults to INFO
    assert "library noise line" not in text  # libraries are held at WARNING


def test_log_level_applies_to_the_author_but_not_to_libraries(setup) -> None:
    project, env = setup
    _, warning_only = run_logged(project, {**env, "HOOK_LOG_LEVEL": "WARNING"})
    assert "author warning" in warning_only
    assert "author info line" not in warning_only
    assert "stage-in" not in warning_only  # our own INFO lines follow the level too

    _, debug = run_logged(project, {**again(env, 1), "HOOK_LOG_LEVEL": "DEBUG"})
    assert "author debug line" in debug
    assert "library noise line" not in debug
    assert CANARY not in warning_only + debug


def test_exec_json_logs_carry_the_author_records_nothing_raw(setup) -> None:
    project, env = setup
    child = exec_command({**env, "HOOK_LOG_FORMAT": "json"}, "--project", str(project))
    _, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    records = [json.loads(line) for line in err.splitlines()]  # every line is JSON: none raw
    authored = [r for r in records if r["logger"] == "author"]
    assert [(r["level"], r["message"]) for r in authored] == [
        ("INFO", "author info line"),
        ("WARNING", "author warning: the token is **********"),
    ]
    assert CANARY not in err


def test_repeated_inprocess_runs_neither_duplicate_lines_nor_leak_handlers(setup) -> None:
    project, env = setup
    root, ours = logging.getLogger(), logging.getLogger("hook_processor")
    before = (list(root.handlers), root.level, list(ours.handlers), ours.level, ours.propagate)
    botocore_level = logging.getLogger("botocore").level
    for n in range(3):
        _, text = run_logged(project, again(env, n))
        assert text.count("author info line") == 1
        assert sum("stage-in: s3://" in line for line in text.splitlines()) == 1
    after = (list(root.handlers), root.level, list(ours.handlers), ours.level, ours.propagate)
    assert after == before
    assert logging.getLogger("botocore").level == botocore_level
