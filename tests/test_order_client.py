"""The order client's pure parts: the order body it builds, option values, an order's outcome."""

from __future__ import annotations

from hook_processor.order_client import Credentials, option_value, order_body, outcome


def test_the_body_takes_the_file_then_the_options_over_it() -> None:
    file_body = {
        "Name": "from the file",
        "WorkflowName": "ignored: --workflow wins",
        "IdentifierList": ["a", "b"],
        "Priority": 7,
        "WorkflowOptions": [
            {"Name": "output_storage", "Value": "PRIVATE"},
            {"Name": "sleep_time", "Value": 5},
        ],
    }
    body = order_body(
        workflow="odp-test",
        name=None,
        identifiers=(),
        file_body=file_body,
        options={"SLEEP_TIME": "9", "extra": "x"},
        priority=None,
        types={"sleep_time": "int"},
    )
    assert body == {
        "Name": "from the file",
        "WorkflowName": "odp-test",
        "IdentifierList": ["a", "b"],
        "Priority": 7,
        "WorkflowOptions": [
            {"Name": "output_storage", "Value": "PRIVATE"},
            {"Name": "SLEEP_TIME", "Value": 9},
            {"Name": "extra", "Value": "x"},
        ],
    }


def test_a_name_value_file_and_the_flags() -> None:
    body = order_body(
        workflow="w",
        name="mine",
        identifiers=("id1",),
        file_body={"output_storage": "TEMPORARY"},
        options={},
        priority=90,
    )
    assert body == {
        "Name": "mine",
        "WorkflowName": "w",
        "IdentifierList": ["id1"],
        "WorkflowOptions": [{"Name": "output_storage", "Value": "TEMPORARY"}],
        "Priority": 90,
    }
    assert (
        order_body(
            workflow="w", name=None, identifiers=(), file_body=None, options={}, priority=None
        )["IdentifierList"]
        == []
    )


def test_values_follow_the_workflow_option_type() -> None:
    assert option_value("12", "int") == 12
    assert option_value("12", "str") == "12"  # an access key of digits stays a string
    assert option_value("12", None) == "12"
    assert option_value("1.5", "float") == 1.5
    assert option_value("TRUE", "bool") is True
    assert option_value("soon", "int") == "soon"  # the service names the bad value


def test_an_orders_outcome_from_its_items() -> None:
    def items(*statuses: str) -> list[dict[str, str]]:
        return [{"Status": s} for s in statuses]

    assert outcome(items("completed", "completed")) == "completed"
    assert outcome(items("completed", "failed", "cancelled")) == "failed"
    assert outcome(items("completed", "cancelled")) == "cancelled"
    assert outcome(items("completed", "in_progress")) == "in_progress"
    assert outcome(items("queued", "queued")) == "queued"
    assert outcome([]) == "queued"


def test_credentials_never_show_their_secrets() -> None:
    shown = repr(Credentials(username="u", password="pw-Hidden", token="tok-Hidden"))
    assert "Hidden" not in shown and "u" in shown
