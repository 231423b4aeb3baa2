"""Orders end to end over HTTP: the real OrderService (hello_world in-process, odp-test in a
subprocess), the real store, moto's S3 server, uvicorn, requests as the notebook uses it."""

from __future__ import annotations

import io
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from api_server import ApiServer

from hook_processor.s3server import S3Server
from hook_processor.service.executor import Executor
from hook_processor.service.orders import OrderService
from hook_processor.service.store import Store
from hook_processor.service.workflows import load_workflows, sync_workflows

HELLO_WORLD = Path(__file__).resolve().parents[2] / "examples" / "hello_world"
# moto accepts any secret key: SECRET stands in for the user's and must never come back.
SECRET = "in-SECRET-" + uuid.uuid4().hex
BATCH_ORDER_FIELDS = [
    "Name", "Priority", "WorkflowName", "NotificationEndpoint", "NotificationEpUsername",
    "NotificationStatus", "WorkflowOptions", "Id", "Status", "SubmissionDate", "EstimatedDate",
    "KeycloakUUID", "WorkflowId", "WorkflowDisplayName", "WorkflowVersion",
]  # fmt: skip


class Local:
    """The whole local service over one data dir (stop + start again = a restart)."""

    def __init__(self, data_dir: Path, s3: S3Server) -> None:
        self.data_dir, self.s3 = data_dir, s3
        self.start()

    def start(self) -> None:
        self.store = Store(self.data_dir / "hook.sqlite3")
        workflows = load_workflows([HELLO_WORLD], [])
        sync_workflows(self.store, workflows)
        executor = Executor(mode="inprocess", s3=self.s3, data_dir=self.data_dir)
        self.service = OrderService(self.store, workflows, executor, concurrency=1)
        self.service.start()
        self.api = ApiServer(self.service, self.store, s3=self.s3)
        self.http = self.api.session()

    def stop(self) -> None:
        self.api.stop()
        self.service.stop()

    def post(self, body: Any, **kwargs: Any) -> requests.Response:
        return self.http.post(
            self.api.root + "BatchOrder/OData.CSC.Order", json=body, timeout=30, **kwargs
        )

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.http.get(self.api.root + path, timeout=30, **kwargs)


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server) -> Iterator[Local]:
    service = Local(tmp_path_factory.mktemp("orders"), s3_server)
    yield service
    service.stop()


@pytest.fixture
def input_bucket(s3_server: S3Server) -> str:
    bucket = f"api-{uuid.uuid4().hex[:10]}"
    client = s3_server.client()
    client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=bucket, Key="in/example.data", Body=b"hello hook\n")
    return bucket


def hello_order(s3: S3Server, bucket: str, storage: str, name: str) -> dict[str, Any]:
    options = [
        {"Name": "output_storage", "Value": storage},
        {"Name": "source_s3_path", "Value": f"s3://{bucket}/in/"},
        {"Name": "source_s3_endpoint_url", "Value": s3.endpoint_url},
        {"Name": "source_s3_access_key", "Value": s3.access_key},
        {"Name": "source_s3_secret_key", "Value": SECRET},
    ]
    if storage == "PRIVATE":
        options += [
            {"Name": "output_s3_endpoint_url", "Value": s3.endpoint_url},
            {"Name": "output_s3_access_key", "Value": s3.access_key},
            {"Name": "output_s3_secret_key", "Value": SECRET},
            {"Name": "output_s3_path", "Value": f"s3://{bucket}/out"},
        ]
    return {
        "Name": name,
        "WorkflowName": "dedl_hello_world",
        "IdentifierList": ["Custom Hook"],
        "WorkflowOptions": options,
    }


def _wait_done(local: Local, order_id: int, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        order: dict[str, Any] = local.get(f"BatchOrder({order_id})").json()["value"]
        if order["Status"] in ("completed", "failed", "cancelled"):
            return order
        time.sleep(0.2)
    raise AssertionError(f"order {order_id} did not finish")


def test_temporary_order_end_to_end(local: Local, input_bucket: str) -> None:
    answer = local.post(hello_order(local.s3, input_bucket, "TEMPORARY", "api temp 060"))
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["@odata.context"] == "#metadata/Odata.CSC.BatchOrder"
    order = body["value"]
    assert list(order) == BATCH_ORDER_FIELDS
    # The order as it stands: a free worker may have claimed its item already.
    assert isinstance(order["Id"], int) and order["Status"] in ("queued", "in_progress")
    assert order["KeycloakUUID"] == "alice" and isinstance(order["WorkflowId"], int)
    assert SECRET not in answer.text
    # The keys are secrets (SecretStr) too: omitted, as the live API omits secret options.
    assert [o["Name"] for o in order["WorkflowOptions"]] == [
        "output_storage", "source_s3_path", "source_s3_endpoint_url",
    ]  # fmt: skip
    assert _wait_done(local, order["Id"])["Status"] == "completed"

    products = local.get(f"BatchOrder({order['Id']})/Products").json()["value"]
    assert len(products) == 1
    product = products[0]
    assert product["Status"] == "completed" and product["InputProductReference"] == "Custom Hook"
    assert product["DownloadLink"] and product["ProcessedSize"] > 0
    download = local.get(f"BatchOrder({order['Id']})/Product({product['Id']})/$value")
    assert download.status_code == 200  # requests followed the 307 to the presigned link
    assert download.history[0].status_code == 307
    with zipfile.ZipFile(io.BytesIO(download.content)) as archive:
        texts = [archive.read(n) for n in archive.namelist() if n.endswith("example.data")]
    assert texts == [b"HELLO HOOK\n"]

    log = local.get(f"BatchOrder({order['Id']})/Product({product['Id']})/Log")
    assert log.status_code == 200
    assert log.headers["Content-Type"].startswith("text/plain")
    assert "example.data" in log.text
    assert SECRET not in log.text

    production = local.get("ProductionOrders", params={"$filter": f"id eq {product['Id']}"})
    [item] = production.json()["value"]
    assert item["Id"] == str(product["Id"]) and item["Status"] == "completed"
    assert item["StatusMessage"] == product["StatusMessage"]
    for path in ("BatchOrders", "ProductionOrders", f"BatchOrder({order['Id']})/Products"):
        assert SECRET not in local.get(path).text


def test_private_order_has_no_download_link(local: Local, input_bucket: str) -> None:
    order = local.post(hello_order(local.s3, input_bucket, "PRIVATE", "api private")).json()
    order_id = order["value"]["Id"]
    assert _wait_done(local, order_id)["Status"] == "completed"
    [product] = local.get(f"BatchOrder({order_id})/Products").json()["value"]
    assert product["DownloadLink"] is None
    value = local.get(f"BatchOrder({order_id})/Product({product['Id']})/$value")
    assert value.status_code == 404
    assert f"PRIVATE storage (s3://{input_bucket}/out)" in value.json()["detail"]
    keys = [
        o["Key"]
        for o in local.s3.client().list_objects_v2(Bucket=input_bucket, Prefix="out/")["Contents"]
    ]
    assert "out/example.data" in keys


@pytest.mark.parametrize(
    ("body", "status", "named"),
    [
        ("{not json", 400, "the body is not JSON"),
        ([1, 2], 400, "must be a JSON object"),
        ({"WorkflowName": "odp-test"}, 400, "Name"),
    ],
)
def test_bad_bodies_are_400(local: Local, body: Any, status: int, named: str) -> None:
    if isinstance(body, str):
        answer = local.http.post(
            local.api.root + "BatchOrder/OData.CSC.Order",
            data=body,
            headers={"Content-Type": "application/json"},
            timeout=10,
        )
    else:
        answer = local.post(body)
    assert answer.status_code == status, answer.text
    assert named in str(answer.json()["detail"])


def test_unknown_workflow_and_bad_options_are_422(local: Local) -> None:
    before = local.get("BatchOrders", params={"$count": "true", "$top": "0"}).json()
    unknown = local.post({"Name": "x", "WorkflowName": "nope", "IdentifierList": []})
    assert unknown.status_code == 422
    [problem] = unknown.json()["detail"]
    assert problem["loc"] == ["body", "WorkflowName"]
    assert "dedl_hello_world" in problem["msg"] and "odp-test" in problem["msg"]
    bad = local.post(
        {
            "Name": "x",
            "WorkflowName": "odp-test",
            "IdentifierList": [],
            "WorkflowOptions": [
                {"Name": "sleep_time", "Value": "soon"},
                {"Name": "output_storage", "Value": "SOMEWHERE"},
            ],
        }
    )
    assert bad.status_code == 422
    detail = bad.json()["detail"]
    assert all(set(d) >= {"loc", "msg", "type"} for d in detail)
    assert len(detail) == 2  # one entry per bad option
    named = " ".join(f"{d['loc']} {d['msg']}" for d in detail)
    assert "sleep_time" in named and "output_storage" in named
    after = local.get("BatchOrders", params={"$count": "true", "$top": "0"}).json()
    assert after["@odata.count"] == before["@odata.count"]  # nothing queued


def _odp_test(local: Local, name: str, sleep: int, priority: int = 50) -> int:
    answer = local.post(
        {
            "Name": name,
            "WorkflowName": "odp-test",
            "IdentifierList": [],
            "Priority": priority,
            "WorkflowOptions": [{"Name": "sleep_time", "Value": sleep}],
        }
    )
    assert answer.status_code == 201, answer.text
    order_id: int = answer.json()["value"]["Id"]
    return order_id


def test_cancel_queued_and_running_orders_then_409(local: Local) -> None:
    running = _odp_test(local, "api cancel running", 60)
    queued = _odp_test(local, "api cancel queued", 60)
    deadline = time.monotonic() + 60
    while local.get(f"BatchOrder({running})").json()["value"]["Status"] != "in_progress":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    [item] = local.get(f"BatchOrder({queued})/Products").json()["value"]
    cancelled = local.http.post(local.api.root + f"ProductionOrder({item['Id']})/OData.CSC.Cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["value"]["Status"] == "cancelled"
    assert cancelled.json()["value"]["Id"] == str(item["Id"])
    again = local.http.post(local.api.root + f"BatchOrder({queued})/OData.CSC.Cancel")
    assert again.status_code == 409
    assert "already cancelled" in again.json()["detail"]

    stop = local.http.post(local.api.root + f"BatchOrder({running})/OData.CSC.Cancel")
    assert stop.status_code == 200
    assert stop.json()["@odata.context"] == "#metadata/Odata.CSC.BatchOrder"
    assert _wait_done(local, running, timeout=60)["Status"] == "cancelled"
    for path in ("BatchOrder(999999)/OData.CSC.Cancel", "ProductionOrder(999999)/OData.CSC.Cancel"):
        missing = local.http.post(local.api.root + path)
        assert missing.status_code == 404
        assert "999999" in missing.json()["detail"]


def test_orders_survive_a_restart(tmp_path: Path, s3_server: S3Server) -> None:
    service = Local(tmp_path, s3_server)
    try:
        order_id = _odp_test(service, "api restart", 0)
        token = service.http.headers["Authorization"]
        _wait_done(service, order_id)
        service.stop()
        service.start()
        service.http.headers["Authorization"] = token  # the token of before the restart
        order = service.get(f"BatchOrder({order_id})")
        assert order.status_code == 200
        assert order.json()["value"]["Status"] == "completed"
    finally:
        service.stop()


def test_refusals_never_quote_a_secret(local: Local) -> None:
    answer = local.post(
        {
            "Name": "x",
            "WorkflowName": "dedl_hello_world",
            "IdentifierList": [],
            "WorkflowOptions": [
                {"Name": "source_s3_secret_key", "Value": [SECRET]},
                {"Name": "output_s3_secret_key", "Value": {"k": SECRET}},
                {"Name": "output_storage", "Value": SECRET},
            ],
        }
    )
    assert answer.status_code == 422
    assert "output_storage" in answer.text
    # output_storage is no secret: its bad value may be quoted; the secret options' may not.
    assert answer.text.count(SECRET) <= 1
    assert f'["{SECRET}"]' not in answer.text and f'"k": "{SECRET}"' not in answer.text
