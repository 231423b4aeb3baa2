"""The option contract: sources, precedence, aliases, the order body, every problem at once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import Field
from seed_order import seed_order

from hook_processor.errors import ExitCode, OptionsError
from hook_processor.options import Options, OptionSources, load_config, parse_cli_options

CANARY = "CANARY-SECRET-9f8e7d"

PRIVATE_ENV = {
    "INPUT_S3_PATH": "s3://inb/data/",
    "s3_bucket": "out",
    "S3_ACCESS_KEY": "AK",
    "S3_SECRET_KEY": CANARY,
}

SEED_ORDER = seed_order(CANARY)


class Sleepy(Options):
    sleep_time: int = Field(0, ge=0, description="Seconds to sleep")


def test_environment_names_are_case_insensitive() -> None:
    config = load_config(OptionSources(env=PRIVATE_ENV))
    assert config.standard.input_s3_path == "s3://inb/data/"
    assert config.output_location == ("out", "")
    assert config.standard.s3_secret_key.get_secret_value() == CANARY


def test_seed_order_body_with_live_aliases(tmp_path: Path) -> None:
    path = tmp_path / "order.json"
    path.write_text(json.dumps(SEED_ORDER))
    config = load_config(OptionSources(file=path))
    std = config.standard
    assert std.input_s3_path == "s3://inputs/dedl_hello_world/input_file_location"
    assert std.input_s3_endpoint_url == "https://s3.example.test"
    assert config.output_location == ("results", "hello")
    assert std.s3_access_key.get_secret_value() == "OUT-AK"
    assert config.order.identifiers == ("Custom Hook",)
    assert config.order.workflow_name == "dedl_hello_world"
    assert config.order.order_name == "Tutorial dedl_hello_world - user"
    assert config.order.priority == 1
    assert CANARY not in repr(config)


def test_precedence_cli_over_file_over_environment(tmp_path: Path) -> None:
    path = tmp_path / "options.json"
    path.write_text(json.dumps({"input_s3_path": "s3://file/x/", "s3_prefix": "from-file"}))
    env = {**PRIVATE_ENV, "S3_PREFIX": "from-env"}
    env["SOURCE_S3_PATH"] = env.pop("INPUT_S3_PATH")
    config = load_config(OptionSources(env=env, file=path, cli={"SOURCE_S3_PATH": "s3://cli/z/"}))
    assert config.standard.input_s3_path == "s3://cli/z/"
    assert config.output_location == ("out", "from-file")


def test_workflow_options_from_every_source(tmp_path: Path) -> None:
    assert (
        load_config(
            OptionSources(env={**PRIVATE_ENV, "SLEEP_TIME": "3"}), Sleepy
        ).workflow.sleep_time
        == 3
    )
    config = load_config(
        OptionSources(env={**PRIVATE_ENV, "SLEEP_TIME": "3"}, cli={"sleep_time": "5"}), Sleepy
    )
    assert config.workflow.sleep_time == 5


def test_every_problem_at_once_and_no_value_echoed() -> None:
    env = {
        "input_s3_access_key": CANARY,  # without its secret key
        "output_storage": "somewhere",
        "HOOK_CONCURRENCY": "many",
        "SLEEP_TIME": CANARY,
    }
    with pytest.raises(OptionsError) as caught:
        load_config(OptionSources(env=env), Sleepy)
    message = str(caught.value)
    assert caught.value.exit_code == ExitCode.BAD_OPTIONS
    assert "output_storage: Input should be 'PRIVATE' or 'TEMPORARY'" in message
    assert "HOOK_CONCURRENCY:" in message
    assert "sleep_time:" in message
    assert CANARY not in message


def test_private_needs_bucket_and_credentials() -> None:
    with pytest.raises(OptionsError) as caught:
        load_config(OptionSources(env={"input_s3_path": "s3://inb/x/"}))
    message = str(caught.value)
    assert "s3_bucket (or output_s3_path): required with output_storage=PRIVATE" in message
    assert "s3_access_key and s3_secret_key" in message
    assert "input_s3_path" not in message


def test_missing_input_is_named() -> None:
    with pytest.raises(OptionsError, match=r"input_s3_path \(or source_s3_path\): required"):
        load_config(
            OptionSources(
                env={
                    "output_storage": "temporary",
                    "HOOK_TEMPORARY_S3_BUCKET": "tmp",
                    "HOOK_TEMPORARY_S3_ENDPOINT_URL": "http://127.0.0.1:1",
                }
            )
        )


def test_temporary_needs_the_platform_storage() -> None:
    with pytest.raises(
        OptionsError, match="HOOK_TEMPORARY_S3_ENDPOINT_URL and HOOK_TEMPORARY_S3_BUCKET"
    ):
        load_config(
            OptionSources(env={"input_s3_path": "s3://inb/x/", "output_storage": "Temporary"})
        )


def test_two_names_of_one_option_disagreeing_is_an_error() -> None:
    with pytest.raises(OptionsError, match="another name of the same option"):
        load_config(
            OptionSources(env=PRIVATE_ENV, cli={"s3_secret_key": "a", "output_s3_secret_key": "b"})
        )


def test_bad_urls_are_named() -> None:
    with pytest.raises(OptionsError) as caught:
        load_config(
            OptionSources(
                env={
                    **PRIVATE_ENV,
                    "input_s3_path": "/local/path",
                    "s3_endpoint_url": "s3.example.test",
                }
            )
        )
    assert "input_s3_path" in str(caught.value)
    assert "s3_endpoint_url: must be an http:// or https:// URL" in str(caught.value)


def test_unknown_and_platform_injected_options() -> None:
    config = load_config(
        OptionSources(env=PRIVATE_ENV, cli={"brand": "dedl", "platform": "x", "colour": "red"})
    )
    assert [str(u) for u in config.unknown_options] == ["unknown option 'colour' (from --option)"]


def test_order_context_from_environment() -> None:
    env = {
        **PRIVATE_ENV,
        "HOOK_ORDER_ID": "25380",
        "HOOK_IDENTIFIERS": '["a", "b"]',
        "HOOK_WORKFLOW_NAME": "dedl_hello_world",
    }
    order = load_config(OptionSources(env=env)).order
    assert (order.order_id, order.identifiers, order.workflow_name) == (
        "25380",
        ("a", "b"),
        "dedl_hello_world",
    )
    with pytest.raises(OptionsError, match="HOOK_IDENTIFIERS: must be a JSON list"):
        load_config(OptionSources(env={**PRIVATE_ENV, "HOOK_IDENTIFIERS": "[oops"}))


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{", "not valid JSON (line 1"),
        ("[1]", "expected a JSON object"),
        ('{"WorkflowOptions": [{"Name": "x"}]}', "WorkflowOptions must be a list of"),
    ],
)
def test_bad_options_files(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(
        OptionsError, match="--options-file .*" + expected.replace("(", r"\(").replace("[", r"\[")
    ):
        load_config(OptionSources(env=PRIVATE_ENV, file=path))


def test_missing_options_file(tmp_path: Path) -> None:
    with pytest.raises(OptionsError, match="no such file"):
        load_config(OptionSources(file=tmp_path / "nope.json"))


def test_cli_pairs() -> None:
    assert parse_cli_options(["a=1", "b==2", "c="]) == {"a": "1", "b": "=2", "c": ""}
    with pytest.raises(OptionsError, match="NAME=VALUE"):
        parse_cli_options(["novalue"])


def test_transfer_settings_come_from_the_platform_settings_a_run_reads() -> None:
    # The harness and the runtime share these: every HOOK_* transfer setting, none read twice.
    from hook_processor import storage
    from hook_processor.options import platform_settings

    env = {
        "HOOK_CONCURRENCY": "3",
        "HOOK_PART_SIZE_MB": "6",
        "HOOK_S3_MAX_ATTEMPTS": "2",
        "HOOK_S3_THROTTLE_SECONDS": "7.5",
        "hook_s3_checksum": "WHEN_REQUIRED",
        "HOOK_S3_ENGINE": "boto3",
    }
    settings = storage.transfer_settings(platform_settings(env))
    assert (settings.concurrency, settings.part_size, settings.multipart_threshold) == (
        3,
        6 * 1024 * 1024,
        12 * 1024 * 1024,
    )
    assert (settings.max_attempts, settings.throttle_seconds) == (2, 7.5)
    assert (settings.checksum, settings.engine) == ("when_required", "boto3")
    assert storage.transfer_settings(platform_settings({})) == storage.TransferSettings(
        concurrency=16, part_size=8 * 1024 * 1024, multipart_threshold=16 * 1024 * 1024
    )
    with pytest.raises(OptionsError, match="HOOK_S3_THROTTLE_SECONDS"):
        platform_settings({"HOOK_S3_THROTTLE_SECONDS": "-1"})
