"""Orders: validation, one item per identifier, real runs of hello_world and odp-test."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
import requests
from service_support import TEXT, MakeService, hello_order, items, odp_order, order

from hook_processor.s3server import S3Server
from hook_processor.service.orders import OrderError


def counts(service: Any) -> tuple[int, int]:
    db = service.store.connection()
    return (
        db.execute("SELECT COUNT(*) FROM batch_orders").fetchone()[0],
        db.execute("SELECT COUNT(*) FROM items").fetchone()[0],
    )


@pytest.mark.parametrize("mode", ["subprocess", "inprocess"])
def test_hello_world_private_order_publishes_each_item_under_its_id(
    make_service: MakeService, hello_input: str, s3_server: S3Server, mode: str
) -> None:
    service = make_service(mode=mode, concurrency=2)
    body = hello_order(hello_input, IdentifierList=["first", "second"], Priority=7)
    order_id = service.submit(body, user="alice")
    assert service.wait_idle(60)
    done = items(service, order_id)
    assert [i["InputProductReference"] for i in done] == ["first", "second"]
    client = s3_server.client()
    for item in done:
        assert (item["Status"], item["ExitCode"], item["Priority"]) == ("completed", 0, 7)
        assert item["StatusMessage"] == "Processing finished successfully"
        prefix = f"output/{item['Id']}"
        assert item["OutputLocation"] == f"s3://{hello_input}/{prefix}"
        listed = client.list_objects_v2(Bucket=hello_input, Prefix=f"{prefix}/")["Contents"]
        sizes = {o["Key"][len(prefix) + 1 :]: o["Size"] for o in listed}
        sizes.pop("_manifest.json")
        # What was published: example.data and its STAC catalog (catalog.json, one item).
        assert sorted(sizes) == ["_stac/example.data.json", "catalog.json", "example.data"]
        assert sizes["example.data"] == len(TEXT)
        assert (item["ProcessedName"], item["ProcessedSize"]) == (prefix, sum(sizes.values()))
        assert item["DownloadLink"] is None and item["CompletedDate"].endswith("Z")
        body_out = client.get_object(Bucket=hello_input, Key=f"{prefix}/example.data")["Body"]
        assert body_out.read() == TEXT.upper()
        result = json.loads(item["result_json"])
        assert result["OrderId"] == str(item["Id"]) and result["IdentifierList"] == [
            item["InputProductReference"]
        ]
        assert Path(service.item_log(item["Id"]) or "").read_text().count("completed:") == 1
    placed = order(service, order_id)
    assert (placed["Status"], placed["StatusMessage"]) == (
        "completed",
        "requested output product is available",
    )
    assert placed["CompletedDate"] == max(i["CompletedDate"] for i in done)
    assert placed["KeycloakUUID"] == "alice" and placed["WorkflowId"] == 1


def test_one_identifier_publishes_under_the_orders_prefix_and_temporary_gives_a_link(
    make_service: MakeService, hello_input: str, s3_server: S3Server
) -> None:
    service = make_service()
    private = service.submit(hello_order(hello_input), user="u")
    temporary = service.submit(
        hello_order(hello_input, storage="TEMPORARY", IdentifierList=[]), user="u"
    )
    assert service.wait_idle(60)
    (one,) = items(service, private)
    assert one["OutputLocation"] == f"s3://{hello_input}/output"
    body = s3_server.client().get_object(Bucket=hello_input, Key="output/example.data")["Body"]
    assert body.read() == TEXT.upper()
    (zipped,) = items(service, temporary)
    assert zipped["InputProductReference"] is None  # an empty IdentifierList: one item
    assert zipped["Status"] == "completed" and zipped["ProcessedName"].endswith(".zip")
    assert f"_{zipped['Id']}_" in zipped["ProcessedName"]
    answer = requests.get(zipped["DownloadLink"], timeout=10)
    assert answer.status_code == 200 and len(answer.content) == zipped["ProcessedSize"]
    with zipfile.ZipFile(io.BytesIO(answer.content)) as archive:
        assert archive.read("example.data") == TEXT.upper()


def test_odp_test_sleeps_and_writes_its_output(make_service: MakeService) -> None:
    service = make_service()
    order_id = service.submit(odp_order(1), user="u")
    assert service.wait_idle(60)
    (item,) = items(service, order_id)
    assert (item["Status"], item["ExitCode"]) == ("completed", 0)
    answer = requests.get(item["DownloadLink"], timeout=10)
    with zipfile.ZipFile(io.BytesIO(answer.content)) as archive:
        written = json.loads(archive.read("odp-test.json"))
    assert written["sleep_time"] == 1 and written["slept_seconds"] >= 1
    assert written["identifiers"] == ["odp"] and written["order_id"] == str(item["Id"])
    assert order(service, order_id)["WorkflowName"] == "odp-test"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ([1, 2], "must be a JSON object"),
        ({"WorkflowName": "odp-test"}, "Name: required"),
        ({"Name": "x"}, "WorkflowName: required"),
        ({"Name": "x", "WorkflowName": "odp-test", "WorkflowOptions": {"a": 1}}, "WorkflowOptions"),
        ({"Name": "x", "WorkflowName": "odp-test", "WorkflowOptions": [{"Value": 1}]}, "Name"),
        ({"Name": "x", "WorkflowName": "odp-test", "Priority": 0}, "Priority: must be an integer"),
        ({"Name": "x", "WorkflowName": "odp-test", "Priority": 101}, "from 1 to 100"),
        ({"Name": "x", "WorkflowName": "odp-test", "Priority": "5"}, "Priority"),
        ({"Name": "x", "WorkflowName": "odp-test", "Priority": True}, "Priority"),
        ({"Name": "x", "WorkflowName": "odp-test", "IdentifierList": "a"}, "IdentifierList"),
        ({"Name": "x", "WorkflowName": "odp-test", "IdentifierList": [1]}, "list of strings"),
    ],
)
def test_a_bad_body_is_400_and_stores_nothing(
    make_service: MakeService, body: Any, expected: str
) -> None:
    service = make_service(start=False)
    with pytest.raises(OrderError) as caught:
        service.submit(body, user="u")
    assert caught.value.status == 400 and expected in caught.value.detail
    assert counts(service) == (0, 0)


def test_an_unknown_workflow_is_422_naming_the_known_ones(make_service: MakeService) -> None:
    service = make_service(start=False)
    with pytest.raises(OrderError) as caught:
        service.submit({"Name": "x", "WorkflowName": "lai"}, user="u")
    assert caught.value.status == 422
    (detail,) = caught.value.detail
    assert detail["loc"] == ["body", "WorkflowName"]
    assert "'lai'" in detail["msg"] and "dedl_hello_world, odp-test" in detail["msg"]
    assert counts(service) == (0, 0)


def test_bad_options_are_422_naming_each_and_store_nothing(
    make_service: MakeService, hello_input: str
) -> None:
    service = make_service(start=False)
    body = hello_order(hello_input)
    body["WorkflowOptions"] += [
        {"Name": "output_storage", "Value": "SOMEWHERE"},
        {"Name": "sleep_time", "Value": 3},
    ]
    body["WorkflowOptions"][0]["Value"] = "s3://Bad_Bucket/in/"
    with pytest.raises(OrderError) as caught:
        service.submit(body, user="u")
    assert caught.value.status == 422
    locs = sorted(str(d["loc"][2]) for d in caught.value.detail)
    assert locs == ["0", "3", "4"], caught.value.detail
    assert counts(service) == (0, 0)


@pytest.mark.parametrize("mode", ["inprocess", "subprocess"])
def test_secrets_are_never_echoed_logged_or_in_a_result(
    make_service: MakeService, hello_input: str, s3_server: S3Server, tmp_path: Path, mode: str
) -> None:
    secret = "Sekrit-Value-93817"
    service = make_service(mode=mode)
    body = hello_order(hello_input)
    body["WorkflowOptions"] += [
        {"Name": "source_s3_endpoint_url", "Value": s3_server.endpoint_url},
        {"Name": "source_s3_access_key", "Value": "svc-access"},
        {"Name": "source_s3_secret_key", "Value": secret},
        {"Name": "output_s3_access_key", "Value": "svc-access"},
        {"Name": "output_s3_secret_key", "Value": secret + "-out"},
    ]
    order_id = service.submit(body, user="u")
    bad = dict(body, WorkflowOptions=[*body["WorkflowOptions"], {"Name": "nope", "Value": secret}])
    with pytest.raises(OrderError) as caught:
        service.submit(bad, user="u")
    assert secret not in json.dumps(caught.value.detail)
    assert service.wait_idle(60)
    (item,) = items(service, order_id)
    assert item["Status"] == "completed", item["StatusMessage"]
    placed = order(service, order_id)
    echoed = json.loads(placed["echoed_json"])
    assert secret not in placed["echoed_json"]
    assert {o["Name"] for o in echoed} == {
        "source_s3_path",
        "output_storage",
        "output_s3_path",
        "source_s3_endpoint_url",
    }
    assert secret in placed["options_json"]  # kept (0600) so that a queued item can run later
    assert secret not in (item["result_json"] or "") and secret not in str(item["StatusMessage"])
    files = [p for p in (tmp_path / "data" / "items").rglob("*") if p.is_file()]
    assert files and not [p for p in files if secret.encode() in p.read_bytes()]
