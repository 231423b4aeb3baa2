"""Secrets and the container (issue 6): a canary never reaches an image's layers, env or labels.

The canaries are in the developer's environment while the image is built (where a careless
build would turn them into build args or ENV lines) and are the credentials of a real run of
that image against the session's S3 server. Afterwards the image -- config env, labels, history
and every byte of every layer -- and the run's log must not contain any of them.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from container_helpers import copy_project

from hook_processor import container

pytestmark = pytest.mark.container

PREFIX = "dedl_hello_world/input_file_location/"


def stream_contains(chunks: Any, needles: list[bytes]) -> list[bytes]:
    """The needles found in a stream of byte chunks (matches across chunk borders count)."""
    longest = max(map(len, needles))
    found: set[bytes] = set()
    tail = b""
    for chunk in chunks:
        window = tail + chunk
        found.update(n for n in needles if n in window)
        tail = window[-longest:]
    return sorted(found)


def test_canaries_never_reach_the_image_or_the_run_log(
    base_image: Any,
    docker_client: Any,
    run_in_container: Any,
    s3_server: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    canaries = {
        name: f"CANARY-{name.lower()}-{uuid.uuid4().hex}"
        for name in (
            "SOURCE_S3_SECRET_KEY",
            "OUTPUT_S3_SECRET_KEY",
            "HOOK_TEMPORARY_S3_SECRET_KEY",
            "AWS_SECRET_ACCESS_KEY",
        )
    }
    for name, value in canaries.items():  # present while the image is built
        monkeypatch.setenv(name, value)
    name = f"hp_secrets_probe_{uuid.uuid4().hex[:6]}"
    project = copy_project(tmp_path, name)
    report = container.build_processor(
        project, base_image=base_image.tag, ca_bundle=base_image.ca_bundle, client=docker_client
    )
    image = docker_client.images.get(report.image_id)
    try:
        s3 = s3_server.client()
        in_bucket, out_bucket = f"sec-in-{uuid.uuid4().hex[:8]}", f"sec-out-{uuid.uuid4().hex[:8]}"
        for bucket in (in_bucket, out_bucket):
            s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=in_bucket, Key=PREFIX + "example.data", Body=b"secret run\n")
        ran = run_in_container(
            report.image_id,
            environment={
                "SOURCE_S3_ENDPOINT_URL": s3_server.endpoint_url,
                "SOURCE_S3_PATH": f"s3://{in_bucket}/{PREFIX}",
                "SOURCE_S3_ACCESS_KEY": s3_server.access_key,
                "SOURCE_S3_SECRET_KEY": canaries["SOURCE_S3_SECRET_KEY"],
                "OUTPUT_S3_PATH": f"s3://{out_bucket}/run",
                "OUTPUT_S3_ACCESS_KEY": s3_server.access_key,
                "OUTPUT_S3_SECRET_KEY": canaries["OUTPUT_S3_SECRET_KEY"],
                "HOOK_LOG_LEVEL": "DEBUG",
            },
        )
        assert ran.exit_code == 0, ran.output
        got = s3.get_object(Bucket=out_bucket, Key="run/example.data")["Body"].read()
        assert got == b"SECRET RUN\n"

        image.reload()
        config = image.attrs.get("Config") or {}
        texts = {
            "run log": ran.output,
            "env": "\n".join(config.get("Env") or []),
            "labels": repr(config.get("Labels") or {}),
            "history": repr(image.history()),
            "manifest": s3.get_object(Bucket=out_bucket, Key="run/_manifest.json")["Body"]
            .read()
            .decode(),
        }
        for where, text in texts.items():
            assert [c for c in canaries.values() if c in text] == [], where
        needles = [c.encode() for c in canaries.values()]
        assert stream_contains(image.save(named=False), needles) == [], "in a layer"
    finally:
        docker_client.images.remove(report.image_id, force=True)
