"""The recorded JSON shapes (hook-contract.md §3) and the error answers, over a real server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from api_server import SECRET, ApiServer, insert_order, insert_workflow, order_service

from hook_processor.s3server import S3Server
from hook_processor.service.store import Store

WORKFLOW_FIELDS = [
    "Id", "Uuid", "Name", "DisplayName", "Documentation", "Description", "InputProductType",
    "InputProductTypes", "OutputProductType", "OutputProductTypes", "WorkflowVersion",
    "CustomInputSource", "InputProductStatusOffline",
]  # fmt: skip
BATCH_ORDER_FIELDS = [
    "Name", "Priority", "WorkflowName", "NotificationEndpoint", "NotificationEpUsername",
    "NotificationStatus", "WorkflowOptions", "Id", "Status", "SubmissionDate", "EstimatedDate",
    "KeycloakUUID", "WorkflowId", "WorkflowDisplayName", "WorkflowVersion",
]  # fmt: skip
PRODUCTION_ORDER_FIELDS = [
    "Id", "Status", "StatusMessage", "SubmissionDate", "Name", "EstimatedDate",
    "InputProductReference", "WorkflowOptions", "WorkflowName", "WorkflowId", "Priority",
    "NotificationEndpoint", "NotificationEpUsername", "NotificationStatus",
]  # fmt: skip
PRODUCT_FIELDS = [
    "Id", "BatchOrderId", "InputProductReference", "SubmissionDate", "Status", "ProcessedName",
    "ProcessedSize", "OutputUUID", "StatusMessage", "CompletedDate", "DownloadLink",
    "NotificationStatus",
]  # fmt: skip
LINK = "http://127.0.0.1:9/tmp-storage/20240902_1_abc.zip?X-Amz-Signature=abc"


@pytest.fixture(scope="module")
def api(
    tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server
) -> Iterator[tuple[ApiServer, dict[str, Any]]]:
    store = Store(Path(tmp_path_factory.mktemp("shapes")) / "hook.sqlite3")
    insert_workflow(store, "3", "odp-test", DisplayName="ODP Test")
    done = {
        "Status": "completed",
        "StatusMessage": "Processing finished successfully",
        "ProcessedName": "S2A_1.zip",
        "ProcessedSize": 779499257,
        "CompletedDate": "2024-09-02T16:10:33.081Z",
        "DownloadLink": LINK,
    }
    ids = {
        "temporary": insert_order(store, "temp", status="completed", item_fields=done),
        "private": insert_order(
            store,
            "private",
            status="completed",
            item_fields={"Status": "completed", "OutputLocation": "s3://mine/out"},
        ),
        "queued": insert_order(store, "queued", identifiers=("A", "B")),
    }
    server = ApiServer(order_service(store, s3_server), store, s3=s3_server)
    yield server, ids
    server.stop()


def _get(api: tuple[ApiServer, dict[str, Any]], path: str, **kwargs: Any) -> requests.Response:
    server, _ = api
    return server.session().get(server.root + path, timeout=10, **kwargs)


def test_workflows_shape(api: tuple[ApiServer, dict[str, Any]]) -> None:
    body = _get(api, "Workflows").json()
    assert body["@odata.context"] == "$metadata#Workflows/$entity"
    workflow = body["value"][0]
    assert list(workflow) == WORKFLOW_FIELDS
    assert workflow["Id"] == "3"
    assert workflow["InputProductTypes"] == ["*"]
    assert workflow["CustomInputSource"] is False


def test_batch_order_shape(api: tuple[ApiServer, dict[str, Any]]) -> None:
    _, ids = api
    order_id = ids["queued"][0]
    body = _get(api, f"BatchOrder({order_id})").json()
    assert list(body) == ["@odata.context", "value"]
    assert body["@odata.context"] == "#metadata/Odata.CSC.BatchOrder"
    order = body["value"]
    assert list(order) == BATCH_ORDER_FIELDS
    assert order["Id"] == order_id and isinstance(order["Id"], int)
    assert order["WorkflowId"] == 3
    assert order["WorkflowOptions"] == [
        {"Name": "output_storage", "Value": "TEMPORARY"},
        {"Name": "sleep_time", "Value": 1},
    ]
    listed = _get(api, "BatchOrders").json()
    assert listed["@odata.context"] == "#metadata/Odata.CSC.BatchOrder"
    assert [o["Id"] for o in listed["value"]] == sorted(i[0] for i in ids.values())


def test_products_and_product_shape(api: tuple[ApiServer, dict[str, Any]]) -> None:
    _, ids = api
    order_id, items = ids["queued"]
    body = _get(api, f"BatchOrder({order_id})/Products").json()
    assert body["@odata.context"] == "#metadata/OData.CSC.BatchorderItem"
    assert [p["Id"] for p in body["value"]] == items
    assert [p["InputProductReference"] for p in body["value"]] == ["A", "B"]
    product = body["value"][0]
    assert list(product) == PRODUCT_FIELDS
    assert isinstance(product["Id"], int) and product["BatchOrderId"] == order_id
    one = _get(api, f"BatchOrder({order_id})/Product({items[1]})").json()
    assert one["value"]["InputProductReference"] == "B"
    filtered = _get(api, f"BatchOrder({order_id})/Products", params={"$filter": "Id eq 0"})
    assert filtered.json()["value"] == []
    done_id, done_items = ids["temporary"]
    done = _get(api, f"BatchOrder({done_id})/Product({done_items[0]})").json()["value"]
    assert done["ProcessedSize"] == 779499257 and done["DownloadLink"] == LINK


def test_production_order_shape(api: tuple[ApiServer, dict[str, Any]]) -> None:
    _, ids = api
    item = ids["queued"][1][1]
    body = _get(api, "ProductionOrders", params={"$filter": f"Id eq {item}"}).json()
    assert body["@odata.context"] == "$metadata#ProductionOrder/$entity"
    order = body["value"][0]
    assert list(order) == PRODUCTION_ORDER_FIELDS
    assert order["Id"] == str(item)
    assert order["InputProductReference"] == {"Reference": "B", "ContentDate": None}
    assert order["Name"] == "queued" and order["Priority"] == 50
    for key in (f"ProductionOrders({item})", f"ProductionOrders('{item}')"):
        single = _get(api, key).json()
        assert single["value"] == order
    path = _get(
        api, "ProductionOrders", params={"$filter": "InputProductReference/Reference eq 'B'"}
    )
    assert [o["Id"] for o in path.json()["value"]] == [str(item)]


def test_value_redirects_to_the_download_link(api: tuple[ApiServer, dict[str, Any]]) -> None:
    _, ids = api
    order_id, items = ids["temporary"]
    answer = _get(api, f"BatchOrder({order_id})/Product({items[0]})/$value", allow_redirects=False)
    assert answer.status_code == 307
    assert answer.headers["Location"] == LINK


@pytest.mark.parametrize(("which", "why"), [("private", "PRIVATE storage"), ("queued", "queued")])
def test_value_without_a_link_is_404_saying_why(
    api: tuple[ApiServer, dict[str, Any]], which: str, why: str
) -> None:
    _, ids = api
    order_id, items = ids[which]
    answer = _get(api, f"BatchOrder({order_id})/Product({items[0]})/$value", allow_redirects=False)
    assert answer.status_code == 404
    assert "has no DownloadLink" in answer.json()["detail"]
    assert why in answer.json()["detail"]


@pytest.mark.parametrize(
    ("path", "named"),
    [
        ("BatchOrder(999)", "no BatchOrder with Id 999"),
        ("BatchOrder(abc)", "no BatchOrder with Id 'abc'"),
        ("BatchOrder(999)/Products", "no BatchOrder with Id 999"),
        ("BatchOrder(1)/Product(999)", "no Product with Id 999 in BatchOrder 1"),
        ("BatchOrder(1)/Product(999)/$value", "no Product with Id 999"),
        ("BatchOrder(1)/Product(999)/Log", "no Product with Id 999"),
        ("ProductionOrders('999')", "no ProductionOrder with Id '999'"),
        ("ProductionOrders(x)", "no ProductionOrder with Id 'x'"),
        ("Nothing", "no such resource: /odata/v1/Nothing"),
        ("BatchOrder(1)/Whatever", "no such resource"),
    ],
)
def test_unknown_ids_and_paths_are_json_404(
    api: tuple[ApiServer, dict[str, Any]], path: str, named: str
) -> None:
    answer = _get(api, path)
    assert answer.status_code == 404
    assert answer.headers["Content-Type"] == "application/json"
    assert named in answer.json()["detail"]


def test_wrong_method_is_json_405(api: tuple[ApiServer, dict[str, Any]]) -> None:
    server, _ = api
    answer = server.session().delete(server.root + "Workflows", timeout=10)
    assert answer.status_code == 405
    assert answer.json()["detail"] == "DELETE is not allowed on /odata/v1/Workflows"
    assert server.session().get(server.root + "BatchOrder/OData.CSC.Order").status_code == 405


def test_single_entities_refuse_query_options(api: tuple[ApiServer, dict[str, Any]]) -> None:
    _, ids = api
    answer = _get(api, f"BatchOrder({ids['queued'][0]})", params={"$filter": "Id eq 1"})
    assert answer.status_code == 400
    assert "takes no query options" in answer.json()["detail"]


def test_no_secret_in_any_answer(api: tuple[ApiServer, dict[str, Any]]) -> None:
    _, ids = api
    paths = ["Workflows?$expand=WorkflowOptions", "BatchOrders", "ProductionOrders"]
    for order_id, items in ids.values():
        paths += [f"BatchOrder({order_id})", f"BatchOrder({order_id})/Products"]
        paths += [f"ProductionOrders({i})" for i in items]
    for path in paths:
        answer = _get(api, path)
        assert answer.status_code == 200, path
        assert SECRET not in answer.text, path
        assert "output_s3_secret_key" not in answer.text, path


def test_an_internal_error_is_json_500_without_its_text(
    tmp_path: Path, s3_server: S3Server
) -> None:
    store = Store(tmp_path / "hook.sqlite3")
    with store.write() as db:  # a row the API cannot read: its entry is not JSON
        db.execute(
            "INSERT INTO workflows (Id, Name, entry_json, source) "
            f"VALUES ('1', 'broken', '{{{SECRET}', 'builtin:test')"
        )
    server = ApiServer(order_service(store, s3_server), store, s3=s3_server)
    try:
        answer = server.session().get(server.root + "Workflows", timeout=10)
        assert answer.status_code == 500
        assert answer.json() == {
            "detail": "internal error of hook-processor serve (JSONDecodeError)"
        }
        assert SECRET not in answer.text
    finally:
        server.stop()
