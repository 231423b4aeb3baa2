"""Helpers of the order-service tests: order bodies, row readers, waiting."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from hook_processor.service.orders import OrderService

HELLO = Path(__file__).resolve().parents[2] / "examples" / "hello_world"
TEXT = b"hello from the order service\n"

MakeService = Callable[..., OrderService]
"""make_service(mode, concurrency, data_dir, start, workflows): the conftest fixture's type."""


def hello_order(bucket: str, *, storage: str = "PRIVATE", **extra: Any) -> dict[str, Any]:
    options = [
        {"Name": "source_s3_path", "Value": f"s3://{bucket}/input/"},
        {"Name": "output_storage", "Value": storage},
    ]
    if storage == "PRIVATE":
        options.append({"Name": "output_s3_path", "Value": f"s3://{bucket}/output"})
    return {
        "Name": "Tutorial dedl_hello_world - test",
        "WorkflowName": "dedl_hello_world",
        "IdentifierList": ["Custom Hook"],
        "WorkflowOptions": options,
        **extra,
    }


def odp_order(sleep_time: int, **extra: Any) -> dict[str, Any]:
    return {
        "Name": f"odp-test {uuid.uuid4().hex[:6]}",
        "WorkflowName": "odp-test",
        "IdentifierList": ["odp"],
        "WorkflowOptions": [{"Name": "sleep_time", "Value": sleep_time}],
        **extra,
    }


def items(service: OrderService, order_id: int | None = None) -> list[dict[str, Any]]:
    db = service.store.connection()
    if order_id is None:
        rows = db.execute("SELECT * FROM items ORDER BY Id").fetchall()
    else:
        rows = db.execute(
            "SELECT * FROM items WHERE BatchOrderId = ? ORDER BY Position", (order_id,)
        ).fetchall()
    return [dict(r) for r in rows]


def order(service: OrderService, order_id: int) -> dict[str, Any]:
    row = (
        service.store.connection()
        .execute("SELECT * FROM batch_orders WHERE Id = ?", (order_id,))
        .fetchone()
    )
    return dict(row)


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def copy_project(tmp_path: Path, name: str, processor: str) -> Path:
    """hello_world under another workflow name, with another processor.py."""
    import shutil

    project = tmp_path / name
    shutil.copytree(HELLO, project, ignore=shutil.ignore_patterns("__pycache__", "tests"))
    pyproject = project / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"dedl_hello_world"', f'"{name}"'))
    (project / "dedl_hello_world" / "processor.py").write_text(processor)
    return project


def password_grant(token_url: str, user: str, password: str) -> str:
    """The notebook's token call (Keycloak password grant, client ``ordering``): the token."""
    answer = requests.post(
        token_url,
        data={
            "grant_type": "password",
            "client_id": "ordering",
            "username": user,
            "password": password,
        },
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["access_token"]
    return token
