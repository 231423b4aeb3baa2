"""One precedence rule for every option and alias; every bad option reported at once.

--option over the options file over the environment, for each option and for output_s3_path as
s3_bucket + s3_prefix; two names disagreeing inside one source are exit 2 naming both; a null
is not given; bucket names and key prefixes are checked before any work.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field

from hook_processor import runtime
from hook_processor.errors import ExitCode, OptionsError
from hook_processor.options import Options, OptionSources, load_config, parse_cli_options

REPO_ROOT = Path(__file__).resolve().parent.parent
HELLO_WORLD = REPO_ROOT / "examples" / "hello_world"
CANARY = "CANARY-77d1e0-SECRET"

BASE_ENV = {
    "INPUT_S3_PATH": "s3://inb/data/",
    "S3_ACCESS_KEY": "AK",
    "S3_SECRET_KEY": CANARY,
}


class Timed(Options):
    timespan: int = Field(0, description="Seconds")
    spans: list[int] = Field(default_factory=list, description="Several seconds")
    limits: dict[str, int] = Field(default_factory=dict, description="Per-name seconds")
    verbose: bool = Field(False, description="More output")
    either: int | bool = Field(0, description="A number or a switch")


def write(tmp_path: Path, body: Any) -> Path:
    path = tmp_path / "options.json"
    path.write_text(body if isinstance(body, str) else json.dumps(body))
    return path


def problems_of(sources: OptionSources, model: type[Options] | None = None) -> str:
    with pytest.raises(OptionsError) as caught:
        load_config(sources, model)
    assert caught.value.exit_code == ExitCode.BAD_OPTIONS
    assert CANARY not in str(caught.value)
    return str(caught.value)


def workflow_file(*items: tuple[str, Any]) -> dict[str, Any]:
    return {"WorkflowOptions": [{"Name": n, "Value": v} for n, v in items]}


# -- item 7: one precedence rule -------------------------------------------------------------


def test_output_path_in_file_beats_a_stale_prefix_in_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, {"output_s3_path": "s3://outb/X-wanted"})
    env = {**BASE_ENV, "S3_PREFIX": "X-stale", "S3_BUCKET": "stale-bucket"}
    config = load_config(OptionSources(env=env, file=path))
    assert config.output_location == ("outb", "X-wanted")
    assert config.overrides == (
        "output_s3_path from the options file overrides S3_BUCKET from the environment",
        "output_s3_path from the options file overrides S3_PREFIX from the environment",
    )


def test_a_higher_prefix_replaces_only_the_prefix_of_a_lower_output_path(tmp_path: Path) -> None:
    path = write(tmp_path, {"output_s3_path": "s3://outb/from-file"})
    config = load_config(OptionSources(env=BASE_ENV, file=path, cli={"S3_PREFIX": "from-cli"}))
    assert config.output_location == ("outb", "from-cli")
    assert config.overrides == (
        "S3_PREFIX from --option overrides output_s3_path from the options file",
    )


def test_output_path_and_prefix_disagreeing_in_one_file_is_exit_2(tmp_path: Path) -> None:
    path = write(tmp_path, workflow_file(("s3_prefix", "A"), ("output_s3_path", "s3://outb/B")))
    message = problems_of(OptionSources(env=BASE_ENV, file=path))
    assert (
        "output_s3_path and s3_prefix: the options file gives both, naming different prefixes"
        in message
    )
    # agreeing names are fine
    path = write(tmp_path, {"s3_bucket": "outb", "output_s3_path": "s3://outb/B", "s3_prefix": "B"})
    assert load_config(OptionSources(env=BASE_ENV, file=path)).output_location == ("outb", "B")


def test_output_path_and_bucket_disagreeing_in_the_environment_is_exit_2() -> None:
    env = {**BASE_ENV, "OUTPUT_S3_PATH": "s3://outb/p", "S3_BUCKET": "other"}
    message = problems_of(OptionSources(env=env))
    assert "OUTPUT_S3_PATH and S3_BUCKET: the environment gives both" in message


def test_two_names_of_one_option_in_the_environment_is_exit_2() -> None:
    env = {**BASE_ENV, "S3_BUCKET": "outb", "SOURCE_S3_PATH": "s3://other/data/"}
    message = problems_of(OptionSources(env=env))
    assert (
        "SOURCE_S3_PATH: the environment also sets INPUT_S3_PATH, another name of the same "
        "option, to a different value; keep one" in message
    )
    same = {**env, "SOURCE_S3_PATH": env["INPUT_S3_PATH"]}
    assert load_config(OptionSources(env=same)).standard.input_s3_path == "s3://inb/data/"


def test_a_higher_source_beats_every_name_of_the_option_below(tmp_path: Path) -> None:
    path = write(tmp_path, {"input_s3_path": "s3://from-file/x/", "s3_bucket": "outb"})
    env = {"SOURCE_S3_PATH": "s3://from-env/y/", "S3_ACCESS_KEY": "AK", "S3_SECRET_KEY": CANARY}
    config = load_config(OptionSources(env=env, file=path))
    assert config.standard.input_s3_path == "s3://from-file/x/"
    assert config.overrides == (
        "input_s3_path from the options file overrides SOURCE_S3_PATH from the environment",
    )


def test_the_same_option_twice_in_workflow_options(tmp_path: Path) -> None:
    path = write(tmp_path, workflow_file(("s3_bucket", "outb"), ("timespan", 1), ("Timespan", 2)))
    with pytest.raises(OptionsError, match="Timespan given twice with different values; keep one"):
        load_config(OptionSources(env=BASE_ENV, file=path), Timed)
    path = write(tmp_path, workflow_file(("s3_bucket", "outb"), ("timespan", 1), ("timespan", 1)))
    config = load_config(OptionSources(env=BASE_ENV, file=path), Timed)
    assert config.workflow.timespan == 1
    assert "the options file gives timespan twice (same value)" in config.overrides


def test_a_key_twice_in_a_plain_options_file(tmp_path: Path) -> None:
    path = write(tmp_path, '{"s3_bucket": "outb", "timespan": 1, "timespan": 2}')
    with pytest.raises(OptionsError, match="timespan given twice with different values"):
        load_config(OptionSources(env=BASE_ENV, file=path), Timed)


def test_the_same_option_twice_on_the_command_line() -> None:
    with pytest.raises(OptionsError, match="--option TIMESPAN: given twice with different"):
        parse_cli_options(["timespan=1", "TIMESPAN=2"])
    assert parse_cli_options(["timespan=1", "timespan=1"]) == {"timespan": "1"}


def test_null_in_the_file_does_not_erase_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, workflow_file(("s3_prefix", None), ("timespan", None)))
    env = {**BASE_ENV, "S3_BUCKET": "outb", "S3_PREFIX": "kept", "TIMESPAN": "7"}
    config = load_config(OptionSources(env=env, file=path), Timed)
    assert config.output_location == ("outb", "kept")
    assert config.workflow.timespan == 7
    assert config.overrides == ()


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("timespan", True, "Input should be a valid integer"),  # read as the text "true"
        ("spans", [1, True], "Value error, true/false is not a number here"),
        ("limits", {"a": False}, "Value error, true/false is not a number here"),
    ],
)
def test_true_is_not_a_number(tmp_path: Path, name: str, value: Any, expected: str) -> None:
    path = write(tmp_path, {"s3_bucket": "outb", name: value})
    message = problems_of(OptionSources(env=BASE_ENV, file=path), Timed)
    assert f"{name}: {expected}" in message
    env = {**BASE_ENV, "S3_BUCKET": "outb", name.upper(): json.dumps(value)}
    assert f"{name}: {expected}" in problems_of(OptionSources(env=env), Timed)


def test_true_where_a_bool_is_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, {"s3_bucket": "outb", "verbose": True, "either": True, "spans": [1]})
    workflow = load_config(OptionSources(env=BASE_ENV, file=path), Timed).workflow
    assert (workflow.verbose, workflow.either, workflow.spans) == (True, True, [1])


def test_the_run_publishes_where_the_higher_source_says_and_logs_it(
    s3_server, s3, bucket, tmp_path, capsys
) -> None:
    s3.put_object(Bucket=bucket, Key="in/dedl_hello_world/input_file_location", Body=b"hello")
    path = write(tmp_path, workflow_file(("output_s3_path", f"s3://{bucket}/X-wanted")))
    env = {
        "INPUT_S3_ENDPOINT_URL": s3_server.endpoint_url,
        "INPUT_S3_PATH": f"s3://{bucket}/in/dedl_hello_world/input_file_location",
        "INPUT_S3_ACCESS_KEY": s3_server.access_key,
        "INPUT_S3_SECRET_KEY": CANARY,
        "S3_ACCESS_KEY": s3_server.access_key,
        "S3_SECRET_KEY": CANARY,
        "S3_PREFIX": "X-stale",
        "HOOK_WORK_DIR": str(tmp_path / "work"),
    }
    result = runtime.run(OptionSources(env=env, file=path), project_dir=HELLO_WORLD)
    assert result.exit_code == ExitCode.COMPLETED, result.status_message
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert "X-wanted/_manifest.json" in keys
    assert not [k for k in keys if k.startswith("X-stale")]
    err = capsys.readouterr().err
    assert (
        "option output_s3_path from the options file overrides S3_PREFIX from the environment"
        in err
    )
    assert CANARY not in err and "X-stale" not in err


# -- item 8: every bad option at once, bucket names and prefixes up front --------------------


def test_every_bad_option_at_once() -> None:
    env = {
        **BASE_ENV,
        "OUTPUT_STORAGE": "PRIVAT",
        "INPUT_S3_PATH": "notaurl",
        "S3_ENDPOINT_URL": "ftp://x",
        "S3_BUCKET": "bad/name",
    }
    message = problems_of(OptionSources(env=env))
    lines = message.splitlines()[1:]
    assert [line.split(":")[0].strip(" -") for line in lines] == [
        "output_storage",
        "s3_endpoint_url",
        "input_s3_path",
        "S3_BUCKET (from the environment)",
    ]
    assert "output_storage: Input should be 'PRIVATE' or 'TEMPORARY'" in message
    assert "input_s3_path: expected an S3 URL" in message
    assert "s3_endpoint_url: must be an http:// or https:// URL" in message


def test_a_bad_bucket_is_exit_2_before_any_work(tmp_path: Path, capsys) -> None:
    env = {
        **BASE_ENV,
        "INPUT_S3_ENDPOINT_URL": "http://127.0.0.1:9",
        "S3_BUCKET": "bad/name",
        "HOOK_WORK_DIR": str(tmp_path / "work"),
    }
    result = runtime.run(OptionSources(env=env), project_dir=HELLO_WORLD)
    assert result.exit_code == ExitCode.BAD_OPTIONS
    assert "S3_BUCKET (from the environment): not a valid S3 bucket name" in result.status_message
    assert "lowercase letters, digits, '.' and '-'" in result.status_message
    assert "bad/name" not in capsys.readouterr().err
    assert not (tmp_path / "work" / "input").exists()


@pytest.mark.parametrize(
    ("bucket", "why"),
    [
        ("bad/name", "characters other than"),
        ("Bad_Name", "characters other than"),
        ("ab", "it has 2 characters"),
        ("a" * 64, "it has 64 characters"),
        ("-abc", "start and end"),
        ("abc.", "start and end"),
        ("a..b", "'..'"),
        ("192.168.1.10", "IP address"),
    ],
)
def test_bucket_names_follow_the_s3_rules(tmp_path: Path, bucket: str, why: str) -> None:
    cases = [({"s3_bucket": bucket}, "s3_bucket (from --option)")]
    if "/" not in bucket:  # in a URL, '/' ends the bucket name
        cases += [
            ({"output_s3_path": f"s3://{bucket}/p"}, "output_s3_path (from --option)"),
            (
                {"input_s3_path": f"s3://{bucket}/p/", "s3_bucket": "outb"},
                "input_s3_path (from --option)",
            ),
        ]
    for cli, given in cases:
        message = problems_of(OptionSources(env=BASE_ENV, cli=cli))
        if "expected an S3 URL" in message:  # parse_s3_url refused it first: named as well
            assert given.split(" ")[0] in message
            continue
        assert f"{given}: not a valid S3 bucket name: it" in message
        assert why in message


@pytest.mark.parametrize("bucket", ["my-bucket", "a.b.c", "123", "x" * 63])
def test_valid_bucket_names(bucket: str) -> None:
    cli = {"s3_bucket": bucket, "input_s3_path": f"s3://{bucket}/p/"}
    assert load_config(OptionSources(env=BASE_ENV, cli=cli)).output_location[0] == bucket


@pytest.mark.parametrize(
    ("prefix", "why"),
    [
        ("/abs", "starts with '/'"),
        ("a//b", "empty segment"),
        ("a/../b", "'..' segment"),
        ("./x", "'.' or '..' segment"),
        ("a\nb", "control characters"),
        ("é" * 600, "longer than 1024 bytes"),
    ],
    ids=["absolute", "empty-segment", "dot-dot", "dot", "newline", "too-long"],
)
def test_key_prefixes_are_checked(prefix: str, why: str) -> None:
    cases = (
        ({"s3_bucket": "outb", "s3_prefix": prefix}, "s3_prefix (from --option)"),
        ({"output_s3_path": f"s3://outb/{prefix}"}, "output_s3_path (from --option)"),
        (
            {"s3_bucket": "outb", "input_s3_path": f"s3://inb/{prefix}/"},
            "input_s3_path (from --option)",
        ),
    )
    for cli, given in cases:
        message = problems_of(OptionSources(env=BASE_ENV, cli=cli))
        assert f"{given}: not a valid key prefix: " in message
        assert why in message


def test_good_prefixes() -> None:
    cli = {"output_s3_path": "s3://outb/results/run-1/", "input_s3_path": "s3://inb/a.b/c..d/"}
    assert load_config(OptionSources(env=BASE_ENV, cli=cli)).output_location == (
        "outb",
        "results/run-1",
    )


# -- the same rule in hook-processor run, which hands the options over as variables ---------


def harness_run(tmp_path: Path, s3_server, file_body: dict[str, Any], **options: str):
    from hook_processor import harness

    notes: list[str] = []
    outcome = harness.run(
        harness.RunRequest(
            output_dir=tmp_path / "out",
            project_dir=HELLO_WORLD,
            inputs={"example.data": b"mine"},
            endpoint=s3_server,  # the user's S3: the options file's locations are kept
            options_file=write(tmp_path, file_body),
            options=options,
            environ={},
            notify=notes.append,
        )
    )
    return outcome, notes


def test_run_cli_output_path_beats_the_files_bucket_and_prefix(
    tmp_path: Path, s3_server, s3, bucket
) -> None:
    body = {"input_s3_path": f"s3://{bucket}/in/", "s3_bucket": bucket, "s3_prefix": "from-file"}
    outcome, notes = harness_run(
        tmp_path, s3_server, body, output_s3_path=f"s3://{bucket}/from-cli"
    )
    assert outcome.exit_code == ExitCode.COMPLETED, outcome.logs
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert "from-cli/_manifest.json" in keys and not any(k.startswith("from-file") for k in keys)
    assert "option output_s3_path from --option overrides s3_prefix from the options file" in notes


def test_run_null_in_the_file_is_not_the_text_null(tmp_path: Path, s3_server, s3, bucket) -> None:
    body = workflow_file(
        ("input_s3_path", f"s3://{bucket}/in/"),
        ("output_s3_path", f"s3://{bucket}/wanted"),
        ("s3_prefix", None),
    )
    outcome, _ = harness_run(tmp_path, s3_server, body)
    assert outcome.exit_code == ExitCode.COMPLETED, outcome.logs
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert "wanted/_manifest.json" in keys and not any(k.startswith("null") for k in keys)


def test_run_two_names_disagreeing_in_the_file_is_refused(
    tmp_path: Path, s3_server, bucket
) -> None:
    body = {
        "input_s3_path": f"s3://{bucket}/in/",
        "source_s3_path": f"s3://{bucket}/other/",
        "output_s3_path": f"s3://{bucket}/out",
    }
    with pytest.raises(OptionsError) as caught:
        harness_run(tmp_path, s3_server, body)
    assert (
        "source_s3_path: the options file also sets input_s3_path, another name of the same "
        "option, to a different value; keep one" in str(caught.value)
    )


def test_the_temporary_bucket_is_checked_too() -> None:
    env = {
        **BASE_ENV,
        "OUTPUT_STORAGE": "TEMPORARY",
        "HOOK_TEMPORARY_S3_ENDPOINT_URL": "http://127.0.0.1:9",
        "HOOK_TEMPORARY_S3_BUCKET": "Temp_Zips",
    }
    message = problems_of(OptionSources(env=env))
    assert (
        "HOOK_TEMPORARY_S3_BUCKET: not a valid S3 bucket name: it has characters other" in message
    )
