"""The OData query options over HTTP: a real uvicorn server, rows written into the real store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_server import ApiServer, insert_order, insert_workflow, order_service

from hook_processor.s3server import S3Server
from hook_processor.service.store import Store

SUPPORTED = (
    "eq, ne, gt, lt, ge, le, and, or, not, parentheses, contains(), startswith(), endswith()"
)


@pytest.fixture(scope="module")
def api(
    tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server
) -> Iterator[tuple[ApiServer, dict[str, Any]]]:
    store = Store(Path(tmp_path_factory.mktemp("query")) / "hook.sqlite3")
    insert_workflow(store, "3", "odp-test", DisplayName="ODP Test")
    insert_workflow(store, "10", "dedl_hello_world", DisplayName="DEDL Hello World")
    insert_workflow(store, "4", "lai", DisplayName="LAI")
    ids = {
        "a": insert_order(
            store, "Tutorial odp-test - run060", priority=5, submitted="2024-09-01T10:00:00.000Z"
        ),
        "b": insert_order(
            store, "Tutorial odp-test - run061", priority=10, submitted="2024-09-02T10:00:00.000Z"
        ),
        "c": insert_order(
            store,
            "O'Brien 060 x",
            priority=50,
            status="completed",
            submitted="2024-09-03T10:00:00.000Z",
            identifiers=("S2A_1", "S2A_2"),
        ),
    }
    server = ApiServer(order_service(store, s3_server), store, s3=s3_server)
    yield server, ids
    server.stop()


def _get(api: tuple[ApiServer, dict[str, Any]], path: str, **params: str) -> Any:
    server, _ = api
    session = server.session()
    return session.get(server.root + path, params=params, timeout=10)


def _names(answer: Any) -> list[str]:
    assert answer.status_code == 200, answer.text
    return [v["Name"] for v in answer.json()["value"]]


def test_notebook_filters(api: tuple[ApiServer, dict[str, Any]]) -> None:
    hello = _get(api, "Workflows", **{"$filter": "(Name eq 'dedl_hello_world')"})
    assert _names(hello) == ["dedl_hello_world"]
    assert _names(_get(api, "ProductionOrders", **{"$filter": "(contains(Name,'060'))"})) == [
        "Tutorial odp-test - run060",
        "O'Brien 060 x",
        "O'Brien 060 x",
    ]
    ends = _get(api, "ProductionOrders", **{"$filter": "(endswith(Name,'060'))"})
    assert _names(ends) == ["Tutorial odp-test - run060"]


def test_id_filters_case_insensitive_and_typed(api: tuple[ApiServer, dict[str, Any]]) -> None:
    _, ids = api
    item = ids["b"][1][0]
    for text in (f"id eq {item}", f"Id eq '{item}'", f"ID eq {item}"):
        answer = _get(api, "ProductionOrders", **{"$filter": text})
        assert [v["Id"] for v in answer.json()["value"]] == [str(item)], text
    workflow = _get(api, "Workflows", **{"$filter": "Id eq 10"})
    assert [v["Id"] for v in workflow.json()["value"]] == ["10"]
    order = ids["a"][0]
    batch = _get(api, "BatchOrders", **{"$filter": f"Id eq {order}"}).json()["value"]
    assert [b["Id"] for b in batch] == [order]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Priority eq 5", ["run060"]),
        ("Priority ne 5", ["run061", "x"]),
        ("Priority gt 5", ["run061", "x"]),
        ("Priority lt 10", ["run060"]),
        ("Priority ge 10", ["run061", "x"]),
        ("Priority le 10", ["run060", "run061"]),
        ("Priority eq 5 or Priority eq 50", ["run060", "x"]),
        ("startswith(Name,'Tutorial') and Priority gt 5", ["run061"]),
        ("not (startswith(Name,'Tutorial'))", ["x"]),
        ("not startswith(Name,'Tutorial') or (Priority eq 5)", ["run060", "x"]),
        ("contains(Name,'O''Brien')", ["x"]),
        ("SubmissionDate gt 2024-09-02T00:00:00Z", ["run061", "x"]),
        ("SubmissionDate lt 2024-09-02", ["run060"]),
        ("Status eq 'completed'", ["x"]),
        ("EstimatedDate eq null", ["run060", "run061", "x"]),
        ("EstimatedDate ne null", []),
        ("10 le Priority", ["run061", "x"]),
    ],
)
def test_each_supported_operator(
    api: tuple[ApiServer, dict[str, Any]], text: str, expected: list[str]
) -> None:
    names = _names(_get(api, "BatchOrders", **{"$filter": text}))
    assert [n.rsplit(" ", 1)[-1].replace("-", "") for n in names] == expected


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("tolower(Name) eq 'x'", "tolower()"),
        ("length(Name) eq 3", "length()"),
        ("OData.CSC.Foo(Name)", "OData.CSC.Foo()"),
        ("bogus(Name)", "bogus()"),
        ("Priority add 1 eq 6", "'add'"),
        ("Priority mul 2 eq 10", "'mul'"),
        ("Name in ('a', 'b')", "'in'"),
        ("Nope eq 1", "no field 'Nope'"),
        ("Name eq", "syntax error"),
        ("Priority eq 'five'", "Priority is an integer; 'five' is not"),
        ("contains(Priority,'5')", "needs a text field"),
        ("Priority", "not a boolean"),
    ],
)
def test_each_refused_expression_is_a_400_naming_it(
    api: tuple[ApiServer, dict[str, Any]], text: str, named: str
) -> None:
    answer = _get(api, "BatchOrders", **{"$filter": text})
    assert answer.status_code == 400
    detail = answer.json()["detail"]
    assert named in detail
    assert "$filter" in detail


def test_refused_function_lists_the_supported_ones(api: tuple[ApiServer, dict[str, Any]]) -> None:
    detail = _get(api, "ProductionOrders", **{"$filter": "tolower(Name) eq 'x'"}).json()["detail"]
    assert SUPPORTED in detail


@pytest.mark.parametrize(
    "text",
    [
        "Name eq 'x'; DROP TABLE items; --",
        "Name eq 'x' or 1 eq 1) --",
        "Name eq '' OR 1=1 --'",
        "Name) eq 1",
        "sqlite_master eq 1",
    ],
)
def test_sql_injection_is_refused(api: tuple[ApiServer, dict[str, Any]], text: str) -> None:
    answer = _get(api, "ProductionOrders", **{"$filter": text})
    assert answer.status_code == 400
    everything = _get(api, "ProductionOrders")
    assert len(everything.json()["value"]) == 4  # the tables are intact


def test_injection_in_a_string_value_is_only_a_value(
    api: tuple[ApiServer, dict[str, Any]],
) -> None:
    answer = _get(api, "ProductionOrders", **{"$filter": "Name eq 'x'' OR ''1''=''1'"})
    assert answer.status_code == 200
    assert answer.json()["value"] == []


def test_orderby_top_skip_count(api: tuple[ApiServer, dict[str, Any]]) -> None:
    ids = [w["Id"] for w in _get(api, "Workflows", **{"$orderby": "Id asc"}).json()["value"]]
    assert ids == ["3", "4", "10"]  # by number, though the Ids are strings
    desc = _get(api, "Workflows", **{"$orderby": "Id desc"}).json()["value"]
    assert [w["Id"] for w in desc] == ["10", "4", "3"]
    by_name = _get(api, "Workflows", **{"$orderby": "name desc", "$top": "2"}).json()["value"]
    assert [w["Name"] for w in by_name] == ["odp-test", "lai"]
    page = _get(api, "ProductionOrders", **{"$orderby": "Id desc", "$top": "2", "$skip": "1"})
    all_ids = [p["Id"] for p in _get(api, "ProductionOrders").json()["value"]]
    assert [p["Id"] for p in page.json()["value"]] == list(reversed(all_ids))[1:3]
    counted = _get(
        api, "BatchOrders", **{"$count": "true", "$top": "1", "$filter": "Priority gt 1"}
    )
    body = counted.json()
    assert list(body) == ["@odata.context", "@odata.count", "value"]
    assert body["@odata.count"] == 3
    assert len(body["value"]) == 1
    assert "@odata.count" not in _get(api, "BatchOrders", **{"$count": "false"}).json()
    two = _get(api, "BatchOrders", **{"$orderby": "Priority desc, Name asc"}).json()["value"]
    assert [o["Priority"] for o in two] == [50, 10, 5]


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"$top": "-1"}, "$top must be a non-negative integer"),
        ({"$skip": "x"}, "$skip must be a non-negative integer"),
        ({"$count": "yes"}, "$count must be true or false"),
        ({"$orderby": "Nope"}, "no field 'Nope'"),
        ({"$orderby": "Name sideways"}, "'sideways' is not a direction"),
        ({"$select": "Name"}, "'$select' is not supported"),
        ({"filter": "Name eq 'x'"}, "'filter' is not supported"),
        ({"$expand": "WorkflowOptions"}, "'$expand' is not supported on BatchOrders"),
    ],
)
def test_bad_query_options_are_400(
    api: tuple[ApiServer, dict[str, Any]], params: dict[str, str], named: str
) -> None:
    answer = _get(api, "BatchOrders", **params)
    assert answer.status_code == 400
    assert named in answer.json()["detail"]


def test_expand_workflow_options(api: tuple[ApiServer, dict[str, Any]]) -> None:
    plain = _get(api, "Workflows", **{"$filter": "Name eq 'lai'"}).json()["value"][0]
    assert "WorkflowOptions" not in plain
    params = {"$expand": "WorkflowOptions", "$filter": "(Name eq 'lai')"}
    expanded = _get(api, "Workflows", **params).json()["value"][0]
    assert list(expanded)[-1] == "WorkflowOptions"
    assert expanded["WorkflowOptions"][0]["Name"] == "sleep_time"
    bad = _get(api, "Workflows", **{"$expand": "Products"})
    assert bad.status_code == 400
    assert "supported: WorkflowOptions" in bad.json()["detail"]


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("Priority eq 99999999999999999999", "out of range"),
        ("not Name eq 'x'", "write not (A eq B)"),
        ("not " * 3000 + "startswith(Name,'x')", "nested too deeply"),
    ],
)
def test_edge_expressions_are_400_not_500(
    api: tuple[ApiServer, dict[str, Any]], text: str, named: str
) -> None:
    answer = _get(api, "BatchOrders", **{"$filter": text})
    assert answer.status_code == 400
    assert named in answer.json()["detail"]
    top = _get(api, "BatchOrders", **{"$top": str(2**64)})
    assert top.status_code == 400


def test_the_notebooks_literal_urls(api: tuple[ApiServer, dict[str, Any]]) -> None:
    # The notebook writes the query into the URL string, spaces and quotes included.
    server, _ = api
    session = server.session()
    url = server.root + "Workflows?$expand=WorkflowOptions&$filter=(Name eq 'dedl_hello_world')"
    [workflow] = session.get(url, timeout=10).json()["value"]
    assert workflow["Name"] == "dedl_hello_world" and "WorkflowOptions" in workflow
    url = server.root + "ProductionOrders?$filter=(endswith(Name,'060'))&$orderby=Id desc"
    assert _names(session.get(url, timeout=10)) == ["Tutorial odp-test - run060"]
