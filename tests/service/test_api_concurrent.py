"""Concurrent clients over HTTP lose no order: 200 posts from two clients at once (not timed).

The service is real but not started (no worker runs the items), so the test is about the API and
the store: every 201 is an order that exists, with its own Id and its own item."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from api_server import ApiServer, order_service

from hook_processor.s3server import S3Server
from hook_processor.service.store import Store
from hook_processor.service.workflows import load_workflows, sync_workflows


def test_two_clients_posting_200_orders_lose_none(tmp_path: Path, s3_server: S3Server) -> None:
    store = Store(tmp_path / "hook.sqlite3")
    sync_workflows(store, load_workflows([], []))
    server = ApiServer(order_service(store, s3_server), store, s3=s3_server)
    try:
        clients = {user: server.session(server.token(user)) for user in ("alice", "bob")}

        def post(number: int) -> tuple[int, int, str]:
            user = "alice" if number % 2 else "bob"
            answer = clients[user].post(
                server.root + "BatchOrder/OData.CSC.Order",
                json={
                    "Name": f"load {number}",
                    "WorkflowName": "odp-test",
                    "IdentifierList": [f"id-{number}"],
                    "Priority": 1 + number % 100,
                    "WorkflowOptions": [{"Name": "sleep_time", "Value": 0}],
                },
                timeout=60,
            )
            value = answer.json()["value"]
            return answer.status_code, value["Id"], value["KeycloakUUID"]

        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(post, range(200)))
        assert {status for status, _, _ in results} == {201}
        ids = [order_id for _, order_id, _ in results]
        assert len(set(ids)) == 200
        assert sorted(user for _, _, user in results) == ["alice"] * 100 + ["bob"] * 100

        session = clients["alice"]
        counted = session.get(server.root + "BatchOrders", params={"$count": "true"}).json()
        assert counted["@odata.count"] == 200
        assert sorted(o["Id"] for o in counted["value"]) == sorted(ids)
        items = session.get(
            server.root + "ProductionOrders",
            params={"$count": "true", "$top": "0", "$filter": "startswith(Name,'load ')"},
        ).json()
        assert items["@odata.count"] == 200
        for order_id in ids[:5]:
            [product] = session.get(server.root + f"BatchOrder({order_id})/Products").json()[
                "value"
            ]
            assert product["Status"] == "queued"
    finally:
        server.stop()
