"""Order-service fixtures: a real SQLite file, the session's real moto server, real runs."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from service_support import HELLO, TEXT, MakeService

from hook_processor.s3server import S3Server
from hook_processor.service.executor import Executor
from hook_processor.service.orders import OrderService
from hook_processor.service.store import Store
from hook_processor.service.workflows import Workflow, load_workflows, sync_workflows


@pytest.fixture(scope="session")
def hello_workflows() -> list[Workflow]:
    return load_workflows([HELLO], [])


@pytest.fixture
def hello_input(s3_server: S3Server) -> str:
    """s3://<fresh bucket>/input/ holding example.data; the bucket also takes PRIVATE output."""
    client = s3_server.client()
    bucket = f"svc-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=bucket, Key="input/example.data", Body=TEXT)
    return bucket


@pytest.fixture
def make_service(
    s3_server: S3Server, hello_workflows: list[Workflow], tmp_path: Path
) -> Iterator[MakeService]:
    """make_service(mode="subprocess", concurrency=1, data_dir=tmp_path/"data", start=True)."""
    made: list[OrderService] = []

    def make(
        mode: str = "subprocess",
        concurrency: int = 1,
        data_dir: Path | None = None,
        start: bool = True,
        workflows: list[Workflow] | None = None,
    ) -> OrderService:
        data = data_dir or tmp_path / "data"
        store = Store(data / "hook.sqlite3")
        served = workflows or hello_workflows
        sync_workflows(store, served)
        service = OrderService(
            store,
            served,
            Executor(mode=mode, s3=s3_server, data_dir=data),
            concurrency=concurrency,
        )
        if start:
            service.start()
        made.append(service)
        return service

    yield make
    for service in made:
        service.stop(cancel_running=True)
