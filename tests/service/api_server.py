"""Test support for the API tests: the FastAPI app on a real uvicorn server on 127.0.0.1.

The server runs in a thread (``uvicorn.Server.run`` on a socket bound here at a free port), so a
test can stop it and start another over the same data dir (a restart). Rows can be written into
the store directly (``insert_*``) to test the read side without running orders.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Mapping
from typing import Any

import requests
import uvicorn
from service_support import password_grant

from hook_processor.s3server import S3Server
from hook_processor.service.app import create_app
from hook_processor.service.auth import TOKEN_PATH
from hook_processor.service.executor import Executor
from hook_processor.service.orders import OrderService
from hook_processor.service.store import Store
from hook_processor.service.workflows import load_workflows

SECRET = "s3cr3t-VALUE-never-echoed"


def order_service(store: Store, s3: S3Server) -> OrderService:
    """A real OrderService over ``store`` (odp-test only), not started: the read tests write
    their rows directly, so no worker must pick them up."""
    executor = Executor(mode="subprocess", s3=s3, data_dir=store.path.parent)
    return OrderService(store, load_workflows([], []), executor)


class ApiServer:
    """``create_app(...)`` served by uvicorn at ``self.url`` until :meth:`stop`."""

    def __init__(self, service: Any, store: Store, *, s3: Any, **app_kwargs: Any) -> None:
        self.app = create_app(service, store, s3=s3, **app_kwargs)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.root = f"{self.url}/odata/v1/"
        self.token_url = self.url + TOKEN_PATH
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(20)
        self.sock.close()

    def token(self, user: str = "alice", password: str = "pw") -> str:
        return password_grant(self.token_url, user, password)

    def session(self, token: str | None = None) -> requests.Session:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token or self.token()}"
        return session


def insert_workflow(store: Store, workflow_id: str, name: str, **entry: Any) -> None:
    full = {
        "Id": workflow_id,
        "Uuid": None,
        "Name": name,
        "DisplayName": entry.pop("DisplayName", name.title()),
        "Documentation": None,
        "Description": entry.pop("Description", None),
        "InputProductType": "*",
        "InputProductTypes": ["*"],
        "OutputProductType": None,
        "OutputProductTypes": [],
        "WorkflowVersion": entry.pop("WorkflowVersion", "1.0.0"),
        "CustomInputSource": False,
        "InputProductStatusOffline": False,
        "WorkflowOptions": entry.pop(
            "WorkflowOptions",
            [
                {
                    "Name": "sleep_time",
                    "Description": "s",
                    "Type": "int",
                    "Default": 0,
                    "Value": None,
                    "Required": False,
                }
            ],
        ),
    }
    with store.write() as db:
        db.execute(
            "INSERT INTO workflows (Id, Name, DisplayName, Description, Documentation, "
            "InputProductType, OutputProductType, WorkflowVersion, CustomInputSource, "
            "InputProductStatusOffline, entry_json, source) "
            "VALUES (?, ?, ?, ?, NULL, '*', NULL, ?, 0, 0, ?, 'builtin:test')",
            (
                workflow_id,
                name,
                full["DisplayName"],
                full["Description"],
                full["WorkflowVersion"],
                json.dumps(full),
            ),
        )


def insert_order(
    store: Store,
    name: str,
    *,
    identifiers: tuple[str | None, ...] = ("P1",),
    priority: int = 50,
    status: str = "queued",
    workflow: str = "odp-test",
    submitted: str = "2024-09-02T16:17:22.942Z",
    item_fields: Mapping[str, Any] | None = None,
) -> tuple[int, list[int]]:
    """A BatchOrder with one item per identifier; its options include a secret."""
    options = [
        {"Name": "output_storage", "Value": "TEMPORARY"},
        {"Name": "sleep_time", "Value": 1},
        {"Name": "output_s3_secret_key", "Value": SECRET},
    ]
    echoed = options[:2]
    with store.write() as db:
        cur = db.execute(
            "INSERT INTO batch_orders (Name, Priority, WorkflowName, WorkflowId, "
            "WorkflowDisplayName, WorkflowVersion, Status, StatusMessage, SubmissionDate, "
            "KeycloakUUID, options_json, echoed_json, identifiers_json) "
            "VALUES (?, ?, ?, 3, 'ODP Test', '1.0.0', ?, 'request is queued for processing', "
            "?, 'alice', ?, ?, ?)",
            (
                name,
                priority,
                workflow,
                status,
                submitted,
                json.dumps(options),
                json.dumps(echoed),
                json.dumps(list(identifiers)),
            ),
        )
        order_id = int(cur.lastrowid or 0)
        items = []
        for position, identifier in enumerate(identifiers):
            fields = {"Status": status, **(item_fields or {})}
            columns = ", ".join(fields)
            marks = ", ".join("?" for _ in fields)
            cur = db.execute(
                f"INSERT INTO items (BatchOrderId, Position, InputProductReference, Priority, "
                f"SubmissionDate, {columns}) VALUES (?, ?, ?, ?, ?, {marks})",
                (order_id, position, identifier, priority, submitted, *fields.values()),
            )
            items.append(int(cur.lastrowid or 0))
    return order_id, items
