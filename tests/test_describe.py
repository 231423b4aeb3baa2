"""``hook-processor describe``: the Workflow entry in the Hook API's shape (contract §3.1)."""

from __future__ import annotations

import enum
import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest
from click.testing import CliRunner
from pydantic import AliasChoices, Field, SecretStr

from hook_processor import scaffold
from hook_processor.cli import main
from hook_processor.describe import SECRET_SUFFIX, workflow_entry
from hook_processor.loader import ProjectConfig
from hook_processor.options import Options

REPO_ROOT = Path(__file__).resolve().parent.parent
HELLO_WORLD = REPO_ROOT / "examples" / "hello_world"

# The keys of a DEDL Workflow entry, in the API's order (hook-contract.md §3.1), + WorkflowOptions.
WORKFLOW_KEYS = [
    "Id",
    "Uuid",
    "Name",
    "DisplayName",
    "Documentation",
    "Description",
    "InputProductType",
    "InputProductTypes",
    "OutputProductType",
    "OutputProductTypes",
    "WorkflowVersion",
    "CustomInputSource",
    "InputProductStatusOffline",
    "WorkflowOptions",
]
OPTION_KEYS = ["Name", "Description", "Type", "Default", "Value", "Required"]  # §3.2
SECRETS = {"input_s3_access_key", "input_s3_secret_key", "s3_access_key", "s3_secret_key"}


@pytest.fixture
def isolated_imports() -> Iterator[None]:
    path, modules = list(sys.path), set(sys.modules)
    yield
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        del sys.modules[name]


@pytest.fixture
def project(tmp_path: Path, isolated_imports: None) -> Path:
    return scaffold.new(f"ndvi_{uuid.uuid4().hex[:8]}", tmp_path, description="NDVI maps")


def describe(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, ["describe", *args])


def by_name(entry: dict) -> dict[str, dict]:
    return {option["Name"]: option for option in entry["WorkflowOptions"]}


def test_json_flag_is_the_same_as_format_json(project: Path) -> None:
    flag, long_form = describe(str(project), "--json"), describe(str(project), "--format", "json")
    assert flag.exit_code == 0, flag.output
    assert json.loads(flag.stdout) == json.loads(long_form.stdout)


def test_json_of_a_new_project(project: Path) -> None:
    result = describe(str(project), "--format", "json")

    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    entry = json.loads(result.stdout)
    assert list(entry) == WORKFLOW_KEYS
    assert entry["Name"] == entry["Id"] == project.name
    assert entry["DisplayName"] == scaffold.project_names(project.name).display_name
    assert (entry["Description"], entry["WorkflowVersion"]) == ("NDVI maps", "0.1.0")
    assert all(list(option) == OPTION_KEYS for option in entry["WorkflowOptions"])
    options = by_name(entry)
    assert options["text_case"] == {
        "Name": "text_case",
        "Description": "How to change the case of the text of every input file",
        "Type": "str",
        "Default": "upper",
        "Value": [
            {"value": "upper", "condition": None},
            {"value": "lower", "condition": None},
            {"value": "title", "condition": None},
        ],
        "Required": False,
    }
    storage = options["output_storage"]
    assert [v["value"] for v in storage["Value"]] == ["PRIVATE", "TEMPORARY"]
    assert (storage["Type"], storage["Default"], storage["Required"]) == ("str", "PRIVATE", False)


def test_hello_world_matches_the_services_entry() -> None:
    # hook-contract.md §5: Id "10", "DEDL Hello World", "DEDL Hello World processor", "*", "1.1.0".
    result = describe(str(HELLO_WORLD), "--format", "json")

    assert result.exit_code == 0, result.output
    entry = json.loads(result.stdout)
    assert {k: entry[k] for k in WORKFLOW_KEYS[1:-1]} == {
        "Uuid": None,
        "Name": "dedl_hello_world",
        "DisplayName": "DEDL Hello World",
        "Documentation": None,
        "Description": "DEDL Hello World processor",
        "InputProductType": "*",
        "InputProductTypes": ["*"],
        "OutputProductType": None,
        "OutputProductTypes": [],
        "WorkflowVersion": "1.1.0",
        "CustomInputSource": False,
        "InputProductStatusOffline": False,
    }
    assert isinstance(entry["Id"], str)
    assert list(by_name(entry)) == [
        "input_s3_endpoint_url",
        "input_s3_path",
        "input_s3_access_key",
        "input_s3_secret_key",
        "output_storage",
        "s3_endpoint_url",
        "s3_bucket",
        "s3_prefix",
        "output_s3_path",
        "s3_access_key",
        "s3_secret_key",
    ]


def test_secrets_are_marked_and_never_have_a_default(project: Path) -> None:
    entry = json.loads(describe(str(project), "--format", "json").stdout)

    for name, option in by_name(entry).items():
        assert option["Description"].endswith(SECRET_SUFFIX) == (name in SECRETS), name
        if name in SECRETS:
            assert option["Default"] is None


def test_required_depends_on_output_storage_and_says_so(project: Path) -> None:
    options = by_name(json.loads(describe(str(project), "--format", "json").stdout))

    assert [n for n, o in options.items() if o["Required"]] == ["input_s3_path"]
    for name in ("s3_bucket", "output_s3_path", "s3_access_key", "s3_secret_key"):
        assert "Required when output_storage is PRIVATE" in options[name]["Description"], name
    assert "source_s3_path" in options["input_s3_path"]["Description"]


def test_the_table_is_the_default(project: Path) -> None:
    result = describe(str(project))

    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0] == f"{scaffold.project_names(project.name).display_name} ({project.name} 0.1.0)"
    row = next(line for line in lines if line.strip().startswith("text_case"))
    assert row.split() == ["text_case", "str", "no", "upper", "upper|lower|title"]
    required = {
        line.split()[0]: line.split()[2]
        for line in lines
        if line.startswith("  ") and not line.startswith("    ")
    }
    assert required["input_s3_path"] == "yes"
    assert required["s3_secret_key"] == required["s3_bucket"] == "PRIVATE"
    assert required["s3_prefix"] == "no"
    with pytest.raises(json.JSONDecodeError):
        json.loads(result.stdout)


def test_describe_defaults_to_the_current_folder(project: Path, monkeypatch) -> None:
    monkeypatch.chdir(project)

    result = describe("--format", "json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["Name"] == project.name


def test_a_folder_without_a_project_is_an_error(tmp_path: Path) -> None:
    result = describe(str(tmp_path))

    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"Error: {tmp_path} has no pyproject.toml; run hook-processor in a processor project "
        "(hook-processor new NAME creates one) or set HOOK_ENTRYPOINT=module:function\n"
    )


def test_an_unknown_format_is_a_usage_error(project: Path) -> None:
    result = describe(str(project), "--format", "yaml")

    assert result.exit_code == 2
    assert result.stdout == ""
    assert "Invalid value for '--format'" in result.stderr


# --- the author's options model: types, choices, defaults, required ---------------------------


class Band(enum.Enum):
    RED = "B04"
    NIR = "B08"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Author(Options):
    timespan: int = Field(5, description="Days to cover")
    threshold: float = Field(0.5, description="NDVI threshold.")
    overwrite: bool = Field(True, description="Replace existing outputs")
    band: Band = Field(Band.NIR, description="Band to read")
    level: Level = Field(Level.LOW, description="Level")
    scale: Literal[1, 10, 100] = Field(10, description="Scale factor")
    mode: Literal["fast", "exact"] | None = Field(None, description="Mode")
    tiles: list[str] = Field(default_factory=lambda: ["T31", "T32"], description="Tiles")
    api_token: SecretStr = Field(SecretStr("s3cr3t"), description="Token of the catalogue")
    collection: str = Field(description="Collection to read")
    sleep_time: int = Field(0, validation_alias=AliasChoices("sleep_time", "sleep"))
    undocumented: str = "x"


def test_the_authors_model_is_mapped() -> None:
    project = ProjectConfig(root=Path("."), name="ndvi", entrypoint="ndvi.processor:process")
    options = by_name(workflow_entry(project, Author))

    def short(name: str) -> tuple:
        o = options[name]
        values = None if o["Value"] is None else [v["value"] for v in o["Value"]]
        return o["Type"], o["Default"], values, o["Required"]

    assert short("timespan") == ("int", "5", None, False)
    assert short("threshold") == ("float", "0.5", None, False)
    assert short("overwrite") == ("bool", "true", None, False)
    assert short("band") == ("str", "B08", ["B04", "B08"], False)
    assert short("level") == ("int", "1", ["1", "2"], False)
    assert short("scale") == ("int", "10", ["1", "10", "100"], False)
    assert short("mode") == ("str", None, ["fast", "exact"], False)
    assert short("tiles") == ("list", '["T31", "T32"]', None, False)
    assert short("api_token") == ("str", None, None, False)
    assert short("collection") == ("str", None, None, True)
    assert short("sleep_time") == ("int", "0", None, False)
    assert options["api_token"]["Description"] == "Token of the catalogue. (secret)"
    assert options["threshold"]["Description"] == "NDVI threshold."
    assert options["undocumented"]["Description"] is None
    assert list(options)[-12:] == list(Author.model_fields)


# --- constraints: at the end of the Description (the WorkflowOption shape has no field) -------

CONSTRAINED = """
from typing import Annotated
from pydantic import Field
from hook_processor import Options


class Constrained(Options):
    timespan: int = Field(7, ge=1, le=30, description="Days of data to combine")
    threshold: float = Field(0.5, gt=0, lt=1, multiple_of=0.05)
    tile: str = Field("T31TCJ", min_length=5, max_length=6, pattern=r"^T\\d{2}[A-Z]{3}$")
    bands: list[str] = Field(default_factory=lambda: ["B04"], min_length=1, description="Bands")
    scale: Annotated[int, Field(ge=2)] | None = Field(None, description="Scale")
    label: str = Field("x", description="Free text")


def process(input_dir, output_dir, options: Constrained):
    pass
"""


def test_constraints_end_the_description_in_json_and_table(
    tmp_path: Path, isolated_imports: None
) -> None:
    module = f"constrained_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(CONSTRAINED)
    (tmp_path / "pyproject.toml").write_text(
        f'[tool.hook-processor]\nname = "constrained"\nentrypoint = "{module}:process"\n'
    )

    result = describe(str(tmp_path), "--format", "json")
    assert result.exit_code == 0, result.output
    options = by_name(json.loads(result.stdout))
    assert all(list(option) == OPTION_KEYS for option in options.values())  # no key added
    assert {name: options[name]["Description"] for name in list(options)[-6:]} == {
        "timespan": "Days of data to combine. Constraints: >= 1, <= 30.",
        "threshold": "Constraints: > 0, < 1, multiple of 0.05.",
        "tile": r"Constraints: length >= 5, length <= 6, matches '^T\d{2}[A-Z]{3}$'.",
        "bands": "Bands. Constraints: length >= 1.",
        "scale": "Scale. Constraints: >= 2.",
        "label": "Free text",
    }
    assert (options["timespan"]["Type"], options["timespan"]["Default"]) == ("int", "7")

    table = describe(str(tmp_path))
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    row = next(i for i, line in enumerate(lines) if line.strip().startswith("timespan"))
    assert lines[row].split() == ["timespan", "int", "no", "7", "-"]
    assert lines[row + 1].strip() == "Days of data to combine. Constraints: >= 1, <= 30."
    assert r"      Constraints: length >= 5, length <= 6, matches '^T\d{2}[A-Z]{3}$'." in lines
