"""``export argo --image``: from a real image's labels and user; and the template's pod settings
applied to that image by Docker, the nearest to a pod this machine has (no Kubernetes here).

The plan step and two items run as their pods would: the template's command and environment
(parameters substituted, secrets from a dict standing for the Kubernetes Secret), its user, a
read-only root file system, every capability dropped, no privilege escalation, the work dir an
empty writable folder (the emptyDir) and /tmp a tmpfs. Each item publishes its own set to the
session's S3 server and writes the result where the template's output parameter reads it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from argo_checks import reference_problems, schema_errors, secret_problems, templates_by_name

from hook_processor import container
from hook_processor.s3server import S3Server

pytestmark = pytest.mark.container

HELLO = Path(__file__).resolve().parents[2] / "examples" / "hello_world"
TAG = "hook-argo-hello:argo"  # this branch's tag: image tags are shared on this engine
SECRETS = {"input_s3_access_key", "input_s3_secret_key", "s3_access_key", "s3_secret_key"}
SECRETS |= {"hook_temporary_s3_access_key", "hook_temporary_s3_secret_key"}


@pytest.fixture(scope="module")
def image(base_image: Any, docker_client: Any) -> str:
    container.build_processor(
        HELLO,
        tag=TAG,
        base_image=base_image.tag,
        ca_bundle=base_image.ca_bundle,
        client=docker_client,
        reuse_unchanged=True,
    )
    return TAG


@pytest.fixture(scope="module")
def document(image: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "hook_processor", "export", "argo", "--image", image],
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert done.returncode == 0, done.stderr
    loaded: dict[str, Any] = yaml.safe_load(done.stdout)
    return loaded


def test_export_of_an_image_takes_its_labels_and_user(
    document: dict[str, Any], image: str, docker_client: Any
) -> None:
    assert schema_errors(document) == []
    assert reference_problems(document) == []
    assert secret_problems(document, SECRETS, "dedl-hello-world-secrets") == []
    run = templates_by_name(document)["run"]["container"]
    assert run["image"] == image
    user = docker_client.images.get(image).attrs["Config"]["User"]
    uid, gid = (int(n) for n in user.split(":"))
    assert (run["securityContext"]["runAsUser"], run["securityContext"]["runAsGroup"]) == (uid, gid)
    names = {p["name"] for p in document["spec"]["arguments"]["parameters"]}
    assert {"identifiers", "input_s3_path", "output_storage", "s3_bucket"} <= names


def _substitute(text: str, values: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        return values[
            match.group(1)
        ]  # a KeyError: a tag the template uses that Argo would not fill

    return re.sub(r"\{\{([^{}]+)\}\}", one, text)


def _pod_env(
    template: dict[str, Any], values: dict[str, str], secret: dict[str, str]
) -> dict[str, str]:
    body = template.get("container") or template["script"]
    env = {}
    for entry in body["env"]:
        if "valueFrom" in entry:
            reference = entry["valueFrom"]["secretKeyRef"]
            if reference["key"] in secret:  # optional: a key the Secret lacks is left out
                env[entry["name"]] = secret[reference["key"]]
        else:
            env[entry["name"]] = _substitute(entry["value"], values)
    return env


def _as_pod(docker_client: Any, template: dict[str, Any], image: str, work: Path, **kw: Any) -> Any:
    """``docker run`` with the template's security settings and volumes (emptyDirs: ``work``,
    an empty folder anyone may write, as kubelet makes it; /tmp a tmpfs)."""
    body = template.get("container") or template["script"]
    context = body["securityContext"]
    assert context["readOnlyRootFilesystem"] and context["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"] for m in body["volumeMounts"]}
    assert mounts == {"/work", "/tmp"}
    work.mkdir(mode=0o777)
    work.chmod(0o777)
    box = docker_client.containers.create(
        image,
        user=f"{context['runAsUser']}:{context['runAsGroup']}",
        read_only=True,
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        volumes={str(work): {"bind": "/work", "mode": "rw"}},
        tmpfs={"/tmp": "rw,size=64m"},
        network_mode="host",
        **kw,
    )
    try:
        box.start()
        code = int(box.wait(timeout=180).get("StatusCode", -1))
        out = box.logs(stdout=True, stderr=False).decode(errors="replace")
        err = box.logs(stdout=False, stderr=True).decode(errors="replace")
        return code, out, err
    finally:
        box.remove(force=True)


def test_the_plan_and_two_items_run_in_the_image_as_their_pods_would(
    document: dict[str, Any],
    image: str,
    docker_client: Any,
    s3_server: S3Server,
    s3: Any,
    bucket: str,
    tmp_path: Path,
) -> None:
    s3.put_object(Bucket=bucket, Key="in/example.data", Body=b"hello argo\n")
    workflow = {p["name"]: p.get("value", "") for p in document["spec"]["arguments"]["parameters"]}
    workflow |= {
        "identifiers": json.dumps(["S2A_ONE", "S2B_TWO"]),
        "input_s3_endpoint_url": s3_server.endpoint_url,
        "input_s3_path": f"s3://{bucket}/in/",
        "s3_bucket": bucket,
        "s3_prefix": "argo",
    }
    values = {f"workflow.parameters.{k}": v for k, v in workflow.items()}
    values["workflow.name"] = "dedl-hello-world-x7k2p"
    secret = {
        "input_s3_access_key": s3_server.access_key,
        "input_s3_secret_key": s3_server.secret_key,
        "s3_access_key": s3_server.access_key,
        "s3_secret_key": s3_server.secret_key,
    }
    templates = templates_by_name(document)

    # The plan: Argo writes the script's source to a file and runs the template's command on it.
    plan = templates["plan"]
    source = tmp_path / "script"
    source.write_text(plan["script"]["source"])
    code, out, err = _as_pod(
        docker_client,
        plan,
        image,
        tmp_path / "plan-work",
        entrypoint=[*plan["script"]["command"], "/argo/staging/script"],
        environment=_pod_env(plan, values, secret),
        mounts=[docker_mount(source)],
    )
    assert code == 0, err
    items = json.loads(out)
    assert [i["identifier"] for i in items] == ["S2A_ONE", "S2B_TWO"]

    run = templates["run"]
    (result,) = run["outputs"]["parameters"]
    for item in items:
        inputs = {f"inputs.parameters.{k}": v for k, v in item.items()}
        work = tmp_path / f"work-{item['position']}"
        code, _, err = _as_pod(
            docker_client,
            run,
            image,
            work,
            environment=_pod_env(run, values | inputs, secret),
        )
        assert code == 0, err
        # The output parameter's file, read where the pod wrote it (the work emptyDir).
        written = work / Path(result["valueFrom"]["path"]).relative_to("/work")
        outcome = json.loads(written.read_text())
        assert outcome["Status"] == "completed", outcome
        assert outcome["IdentifierList"] == [item["identifier"]]
        assert outcome["OrderId"] == f"dedl-hello-world-x7k2p-{item['position']}"
        assert outcome["OrderName"] == "dedl-hello-world-x7k2p"
        prefix = f"argo/{item['position']}"
        body = s3.get_object(Bucket=bucket, Key=f"{prefix}/example.data")["Body"].read()
        assert body == b"HELLO ARGO\n"
        manifest = s3.get_object(Bucket=bucket, Key=f"{prefix}/_manifest.json")["Body"].read()
        assert json.loads(manifest)["identifiers"] == [item["identifier"]]


def docker_mount(source: Path) -> Any:
    import docker.types

    return docker.types.Mount("/argo/staging/script", str(source), type="bind", read_only=True)
