"""``serve`` with an image: its workflow from the image's label, one item run in the container."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest

from hook_processor import container
from hook_processor.s3server import S3Server
from hook_processor.service.executor import Executor
from hook_processor.service.orders import OrderService
from hook_processor.service.store import Store
from hook_processor.service.workflows import load_workflows

pytestmark = pytest.mark.container

HELLO = Path(__file__).resolve().parents[2] / "examples" / "hello_world"


def test_an_image_is_a_workflow_and_its_item_runs_in_the_container(
    base_image: Any, docker_client: Any, s3_server: S3Server, tmp_path: Path
) -> None:
    project = tmp_path / "svc_hello"
    shutil.copytree(HELLO, project, ignore=shutil.ignore_patterns("__pycache__", ".benchmarks"))
    pyproject = project / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"dedl_hello_world"', '"svc_hello"'))
    built = container.build_processor(
        project, base_image=base_image.tag, ca_bundle=base_image.ca_bundle, client=docker_client
    )
    (workflow, _odp) = load_workflows([], [built.tag])
    assert (workflow.name, workflow.image, workflow.entry["Id"]) == ("svc_hello", built.tag, "1")
    assert workflow.validate([{"Name": "output_storage", "Value": "TEMPORARY"}])  # no input

    client = s3_server.client()
    bucket = f"svc-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=bucket, Key="input/example.data", Body=b"in a container\n")
    data = tmp_path / "data"
    service = OrderService(
        Store(data / "hook.sqlite3"),
        [workflow],
        Executor(mode="subprocess", s3=s3_server, data_dir=data),  # an image: always a container
    )
    service.start()
    try:
        order_id = service.submit(
            {
                "Name": "container order",
                "WorkflowName": "svc_hello",
                "IdentifierList": ["Custom Hook"],
                "WorkflowOptions": [
                    {"Name": "source_s3_path", "Value": f"s3://{bucket}/input/"},
                    {"Name": "output_storage", "Value": "PRIVATE"},
                    {"Name": "output_s3_path", "Value": f"s3://{bucket}/out"},
                ],
            },
            user="u",
        )
        assert service.wait_idle(180)
    finally:
        service.stop()
    row = (
        service.store.connection()
        .execute("SELECT * FROM items WHERE BatchOrderId = ?", (order_id,))
        .fetchone()
    )
    assert (row["Status"], row["ExitCode"]) == ("completed", 0), row["StatusMessage"]
    assert row["OutputLocation"] == f"s3://{bucket}/out"
    got = client.get_object(Bucket=bucket, Key="out/example.data")["Body"].read()
    assert got == b"IN A CONTAINER\n"
    log = (service.item_log(int(row["Id"])) or Path()).read_text()
    assert "upper-cased example.data" in log
