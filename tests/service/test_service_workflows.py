"""Workflows: describe's entries with our Ids, the built-in odp-test, validation by the runtime."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from service_support import HELLO

from hook_processor.describe import describe_project
from hook_processor.errors import UserError
from hook_processor.service.store import Store
from hook_processor.service.workflows import (
    _model_from_entry,
    load_workflows,
    sync_workflows,
)


def test_each_project_is_a_workflow_with_describes_entry_then_odp_test(tmp_path: Path) -> None:
    hello, odp = load_workflows([HELLO], [])
    assert {**describe_project(HELLO), "Id": "1"} == hello.entry
    assert (hello.name, hello.id, hello.source) == ("dedl_hello_world", 1, f"project:{HELLO}")
    recorded = {
        "Id": "2",
        "Name": "odp-test",
        "DisplayName": "ODP Test",
        "Description": None,
        "InputProductType": None,
        "InputProductTypes": [],
        "WorkflowVersion": "1.0.0",
    }
    assert {k: odp.entry[k] for k in recorded} == recorded
    names = [o["Name"] for o in odp.entry["WorkflowOptions"]]
    assert "sleep_time" in names and "output_storage" in names
    assert not [n for n in names if n.startswith("input_")]
    sleep = next(o for o in odp.entry["WorkflowOptions"] if o["Name"] == "sleep_time")
    assert sleep["Type"] == "int"

    store = Store(tmp_path / "hook.sqlite3")
    sync_workflows(store, [hello, odp])
    sync_workflows(store, [hello, odp])  # rewritten, not appended
    rows = store.connection().execute("SELECT Id, Name, entry_json FROM workflows ORDER BY Id")
    listed = [(r["Id"], r["Name"], json.loads(r["entry_json"])) for r in rows]
    assert [(i, n) for i, n, _ in listed] == [("1", "dedl_hello_world"), ("2", "odp-test")]
    assert listed[0][2] == hello.entry


def test_a_missing_project_folder_is_one_clear_message(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist; give the folder of a processor"):
        load_workflows([tmp_path / "nope"], [])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"project folder .*empty: .*pyproject\.toml"):
        load_workflows([tmp_path / "empty"], [])


def test_two_workflows_of_one_name_are_refused() -> None:
    with pytest.raises(UserError, match="two served workflows are named 'dedl_hello_world'"):
        load_workflows([HELLO, HELLO], [])


def test_validate_names_each_bad_option_by_its_index_and_never_a_value() -> None:
    hello, odp = load_workflows([HELLO], [])
    secret = "TopSecret-4711"
    problems = hello.validate(
        [
            {"Name": "output_storage", "Value": "BOGUS"},
            {"Name": "source_s3_path", "Value": "not-a-url"},
            {"Name": "text_cas", "Value": "x"},
            {"Name": "output_s3_secret_key", "Value": secret},
            {"Name": "HOOK_WORK_DIR", "Value": "/"},
        ]
    )
    by_loc = {p["loc"][2]: p for p in problems}
    assert all(p["loc"][:2] == ["body", "WorkflowOptions"] for p in problems)
    assert set(by_loc) == {0, 1, 2, 4}
    assert "'PRIVATE' or 'TEMPORARY'" in by_loc[0]["msg"]
    assert "s3://" in by_loc[1]["msg"]
    assert by_loc[2]["type"] == "extra_forbidden" and "text_cas" in by_loc[2]["msg"]
    assert "platform setting" in by_loc[4]["msg"]
    assert secret not in json.dumps(problems) and "not-a-url" not in json.dumps(problems)

    assert odp.validate([{"Name": "sleep_time", "Value": 2}]) == []
    bad = odp.validate([{"Name": "sleep_time", "Value": "soon"}])
    assert [(p["loc"], p["type"]) for p in bad] == [(["body", "WorkflowOptions", 0], "value_error")]
    assert "integer" in bad[0]["msg"]


def test_a_missing_required_option_is_named_by_its_name() -> None:
    hello, _ = load_workflows([HELLO], [])
    problems = hello.validate([{"Name": "output_storage", "Value": "PRIVATE"}])
    locs = {p["loc"][2]: p["type"] for p in problems}
    assert locs == {"input_s3_path": "missing", "s3_bucket": "missing"}
    assert (
        hello.validate(
            [
                {"Name": "source_s3_path", "Value": "s3://inputs/x/"},
                {"Name": "output_storage", "Value": "TEMPORARY"},
            ]
        )
        == []
    )


def test_an_images_options_model_is_rebuilt_from_its_entry() -> None:
    model = _model_from_entry(
        "probe",
        [
            {"Name": "output_storage", "Type": "str", "Value": None, "Required": True},
            {"Name": "level", "Type": "int", "Default": "3", "Value": None, "Required": False},
            {
                "Name": "mode",
                "Type": "str",
                "Default": "fast",
                "Value": [
                    {"value": "fast", "condition": None},
                    {"value": "slow", "condition": None},
                ],
                "Required": False,
            },
            {"Name": "token", "Type": "str", "Description": "A token. (secret)", "Required": True},
        ],
    )
    assert model is not None
    assert set(model.model_fields) == {"level", "mode", "token"}
    made = model(level="5", mode="slow", token="tok-9981")
    assert made.level == 5 and made.mode == "slow"  # type: ignore[attr-defined]
    assert "tok-9981" not in repr(made)
    with pytest.raises(ValueError, match="fast"):
        model(mode="medium", token="x")
