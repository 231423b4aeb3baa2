"""One decoding for every source (environment, options file, --option); choices in any case."""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Literal

import pytest
from pydantic import Field
from test_harness import write_project
from test_unknown_options import exec_child

from hook_processor.errors import OptionsError
from hook_processor.options import Options, OptionSources, load_config

VALID = {
    "INPUT_S3_PATH": "s3://inb/data/",
    "S3_BUCKET": "out",
    "S3_ACCESS_KEY": "AK",
    "S3_SECRET_KEY": "SK",
}


class Kind(enum.Enum):
    OPTICAL = "Optical"
    RADAR = "radar"


class Typed(Options):
    tags: list[str] = Field(default_factory=list, description="Tags")
    count: int = Field(1, description="How many")
    flag: bool = Field(False, description="A switch")
    text_case: Literal["upper", "lower", "title"] = Field("upper", description="Case")
    kind: Kind | None = Field(None, description="Sensor kind")
    level: Literal["L1C", "L2A"] | None = Field(None, description="Product level")


def load(tmp_path: Path, source: str, values: dict[str, str]) -> Typed:
    """``values`` (as text) given through one source."""
    if source == "env":
        sources = OptionSources(env={**VALID, **{k.upper(): v for k, v in values.items()}})
    elif source == "cli":
        sources = OptionSources(env=VALID, cli=values)
    else:
        path = tmp_path / "order.json"
        options = [{"Name": k, "Value": v} for k, v in values.items()]
        path.write_text(json.dumps({"WorkflowOptions": options}))
        sources = OptionSources(env=VALID, file=path)
    workflow = load_config(sources, Typed).workflow
    assert isinstance(workflow, Typed)
    return workflow


@pytest.mark.parametrize("source", ["env", "file", "cli"])
def test_list_int_and_bool_as_text_from_every_source(tmp_path: Path, source: str) -> None:
    options = load(tmp_path, source, {"tags": '["a","b"]', "count": "3", "flag": "true"})
    assert (options.tags, options.count, options.flag) == (["a", "b"], 3, True)


def test_typed_json_values_of_the_options_file(tmp_path: Path) -> None:
    path = tmp_path / "order.json"
    path.write_text(
        json.dumps(
            {
                "WorkflowOptions": [
                    {"Name": "tags", "Value": ["x"]},
                    {"Name": "count", "Value": 4},
                    {"Name": "flag", "Value": True},
                    {"Name": "s3_prefix", "Value": 2024},  # a number for a text option: as in env
                ]
            }
        )
    )
    config = load_config(OptionSources(env=VALID, file=path), Typed)
    assert isinstance(config.workflow, Typed)
    assert (config.workflow.tags, config.workflow.count, config.workflow.flag) == (["x"], 4, True)
    assert config.output_location == ("out", "2024")


@pytest.mark.parametrize("source", ["env", "file", "cli"])
def test_a_list_that_is_not_json_is_one_clear_problem(tmp_path: Path, source: str) -> None:
    with pytest.raises(OptionsError) as caught:
        load(tmp_path, source, {"tags": "[a, b", "count": "many"})
    message = str(caught.value)
    assert 'tags: Input should be a valid list; give it as JSON, e.g. ["a", "b"]' in message
    assert "count: Input should be a valid integer" in message


@pytest.mark.parametrize("source", ["env", "file", "cli"])
def test_choices_in_any_case_become_the_declared_spelling(tmp_path: Path, source: str) -> None:
    options = load(tmp_path, source, {"text_case": "LOWER", "kind": "OPTICAL", "level": " l2a "})
    assert options.text_case == "lower"
    assert options.kind is Kind.OPTICAL
    assert options.level == "L2A"


def test_the_case_hint_is_true_where_it_is_given(tmp_path: Path) -> None:
    with pytest.raises(OptionsError) as caught:
        load(tmp_path, "cli", {"text_case": "shout", "kind": "sonar"})
    message = str(caught.value)
    assert (
        "text_case: Input should be 'upper', 'lower' or 'title' (case does not matter)" in message
    )
    assert "kind: Input should be 'Optical' or 'radar' (case does not matter)" in message
    # The platform's own choices follow the same rule.
    config = load_config(OptionSources(env={**VALID, "HOOK_S3_CHECKSUM": "WHEN_REQUIRED"}))
    assert config.platform.s3_checksum == "when_required"


def test_exec_takes_a_list_and_a_choice_from_option(
    private_exec_env, s3_server, s3, bucket, tmp_path
) -> None:
    project = write_project(
        tmp_path,
        """
        import json
        from typing import Literal
        from hook_processor import Options

        class Tagged(Options):
            tags: list[str] = []
            text_case: Literal["upper", "lower"] = "upper"

        def process(input_dir, output_dir, options: Tagged):
            (output_dir / "seen.json").write_text(json.dumps([options.tags, options.text_case]))
        """,
    )
    s3.put_object(Bucket=bucket, Key="in/a", Body=b"a")
    env = dict(private_exec_env)
    child = exec_child(
        env, "--project", str(project), "--option", 'tags=["a","b"]', "-o", "text_case=LOWER"
    )
    assert child.returncode == 0, child.stderr
    seen = s3.get_object(Bucket=bucket, Key="out/seen.json")["Body"].read()
    assert json.loads(seen) == [["a", "b"], "lower"]
