"""``hook-processor export argo``: the WorkflowTemplate validates offline and keeps its promises.

Each export runs the installed command in a child process, as a user would (it imports the
project's code). Validation: Argo v4.0.5's own JSON schema plus our checks (argo_checks.py).
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import yaml
from argo_checks import (
    argo_schema,
    raw_schema,
    reference_problems,
    schema_errors,
    secret_problems,
    templates_by_name,
)

REPO = Path(__file__).resolve().parents[2]
HELLO = REPO / "examples" / "hello_world"
STANDARD_SECRETS = {"input_s3_access_key", "input_s3_secret_key", "s3_access_key", "s3_secret_key"}
PLATFORM_SECRETS = {"hook_temporary_s3_access_key", "hook_temporary_s3_secret_key"}

CANARY = "argo-canary-7d31f0"  # the secret option's default: must appear nowhere in the template
# The options a generated project gets on top of the scaffold's text_case: a secret one and a
# required one.
EXTRA_OPTIONS = f"""
    api_token: SecretStr = Field(SecretStr("{CANARY}"), description="Token of the catalogue API")
    tile_count: int = Field(..., ge=1, description="Tiles per product")
"""


def export(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hook_processor", "export", "argo", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )


def exported(*args: str | Path) -> dict[str, Any]:
    done = export(*args)
    assert done.returncode == 0, done.stderr
    document: dict[str, Any] = yaml.safe_load(done.stdout)
    return document


@pytest.fixture(scope="module")
def hello() -> dict[str, Any]:
    return exported(HELLO)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A project made by `hook-processor new`, with a SecretStr option and a required one,
    exported with every flag, to a .json file."""
    parent = tmp_path_factory.mktemp("generated")
    made = subprocess.run(
        [sys.executable, "-m", "hook_processor", "new", "argo-probe", "--dir", str(parent)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    project = parent / "argo-probe"
    processor = project / "argo_probe" / "processor.py"
    source = processor.read_text()
    source = source.replace("from pydantic import Field", "from pydantic import Field, SecretStr")
    marker = 'description="How to change the case of the text of every input file"\n    )\n'
    assert marker in source
    processor.write_text(source.replace(marker, marker + EXTRA_OPTIONS))
    target = parent / "template.json"
    done = export(
        project,
        "--image", "registry.example/argo-probe:0.1.0",
        "--namespace", "hook",
        "--secret", "probe-keys",
        "--parallelism", "7",
        "--deadline", "900",
        "-o", target,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert "wrote" in done.stderr and "WorkflowTemplate argo-probe" in done.stderr
    assert CANARY not in target.read_text()
    document: dict[str, Any] = json.loads(target.read_text())
    return document


def run_template(document: dict[str, Any]) -> dict[str, Any]:
    return templates_by_name(document)["run"]


def env_of(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    body = template.get("container") or template["script"]
    return {e["name"]: e for e in body["env"]}


def parameters(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in document["spec"]["arguments"]["parameters"]}


# --- validation ------------------------------------------------------------------------------


def test_hello_world_template_passes_argos_schema_and_our_checks(hello: dict[str, Any]) -> None:
    assert hello["kind"] == "WorkflowTemplate" and hello["apiVersion"] == "argoproj.io/v1alpha1"
    assert hello["metadata"]["name"] == "dedl-hello-world"
    assert schema_errors(hello) == []
    assert reference_problems(hello) == []
    secrets = STANDARD_SECRETS | PLATFORM_SECRETS
    assert secret_problems(hello, secrets, "dedl-hello-world-secrets") == []
    assert run_template(hello)["container"]["image"] == "dedl_hello_world:1.1.0"  # build's tag


def test_generated_project_with_a_secret_option_passes(generated: dict[str, Any]) -> None:
    assert generated["metadata"] == {
        **generated["metadata"],
        "name": "argo-probe",
        "namespace": "hook",
    }
    assert schema_errors(generated) == []
    assert reference_problems(generated) == []
    secrets = STANDARD_SECRETS | PLATFORM_SECRETS | {"api_token"}
    assert secret_problems(generated, secrets, "probe-keys") == []
    assert run_template(generated)["container"]["image"] == "registry.example/argo-probe:0.1.0"


def test_the_unpatched_schema_fails_only_on_hera_integers_for_intorstring(
    hello: dict[str, Any],
) -> None:
    # The quirk is real (so the patch is needed) and the patch hides nothing else.
    errors = schema_errors(hello, raw_schema())
    assert errors, "the vendored schema accepts integers for IntOrString now: drop the patch"
    fields = {e.split(": ")[0].rsplit(".", 1)[-1] for e in errors}
    assert fields <= {"activeDeadlineSeconds", "limit", "factor"}, errors
    assert all("is not of type 'string'" in e for e in errors), errors
    assert argo_schema() is not raw_schema()


def test_the_schema_catches_wrong_types(hello: dict[str, Any]) -> None:
    document = copy.deepcopy(hello)
    document["spec"]["parallelism"] = "7"
    run_template(document)["retryStrategy"]["limit"] = [3]
    assert schema_errors(document) == [
        "spec.parallelism: '7' is not of type 'integer'",
        "spec.templates.1.retryStrategy.limit: [3] is not of type 'integer', 'string'",
    ]


def test_the_checks_catch_what_the_schema_lets_pass(hello: dict[str, Any]) -> None:
    def broken(change: Any) -> dict[str, Any]:
        document = copy.deepcopy(hello)
        change(document)
        assert schema_errors(document) == [], "the schema caught it: not a case for our checks"
        return document

    def templates(d: dict[str, Any]) -> dict[str, Any]:
        return templates_by_name(d)

    cases = {
        "entrypoint": lambda d: d["spec"].update(entrypoint="main"),
        "unknown template": lambda d: templates(d)["order"]["steps"][1][0].update(template="runn"),
        "not a workflow parameter": lambda d: env_of(run_template(d))["INPUT_S3_PATH"].update(
            value="{{workflow.parameters.input_s3_pth}}"
        ),
        "not an input parameter": lambda d: env_of(run_template(d))["HOOK_IDENTIFIERS"].update(
            value="{{inputs.parameters.identifierz}}"
        ),
        "names no step": lambda d: templates(d)["order"]["steps"][1][0].update(
            withParam="{{steps.plann.outputs.result}}"
        ),
    }
    for expected, change in cases.items():
        problems = reference_problems(broken(change))
        assert any(expected in p for p in problems), (expected, problems)
    secrets = STANDARD_SECRETS | PLATFORM_SECRETS
    literal = broken(lambda d: env_of(run_template(d))["S3_SECRET_KEY"].update(value="x"))
    as_parameter = broken(
        lambda d: d["spec"]["arguments"]["parameters"].append({"name": "s3_secret_key"})
    )
    for document, expected in ((literal, "not a secretKeyRef"), (as_parameter, "is a parameter")):
        problems = secret_problems(document, secrets, "dedl-hello-world-secrets")
        assert any(expected in p for p in problems), problems


# --- the promises ----------------------------------------------------------------------------


def test_secret_options_come_from_the_secret_by_secret_key_ref(generated: dict[str, Any]) -> None:
    env = env_of(run_template(generated))
    for name in STANDARD_SECRETS | PLATFORM_SECRETS | {"api_token"}:
        assert env[name.upper()] == {
            "name": name.upper(),
            "valueFrom": {"secretKeyRef": {"name": "probe-keys", "key": name, "optional": True}},
        }
    declared = set(parameters(generated))
    assert not declared & (STANDARD_SECRETS | PLATFORM_SECRETS | {"api_token"})
    text = json.dumps(generated)
    assert "api_token}}" not in text  # never substituted from a parameter either
    assert all(
        "secretKeyRef" not in json.dumps(e)
        for e in env_of(templates_by_name(generated)["plan"]).values()
    )


def test_standard_and_author_options_are_workflow_parameters(generated: dict[str, Any]) -> None:
    declared = parameters(generated)
    assert declared["text_case"]["value"] == "upper"
    assert declared["text_case"]["enum"] == ["upper", "lower", "title"]
    assert "value" not in declared["tile_count"]  # required: Argo asks for it at submission
    assert "value" not in declared["input_s3_path"]
    assert "value" not in declared["identifiers"]
    assert declared["output_storage"] == {**declared["output_storage"], "value": "PRIVATE"}
    assert declared["s3_bucket"]["value"] == ""  # optional without a default: not given
    env = env_of(run_template(generated))
    assert env["TEXT_CASE"]["value"] == "{{workflow.parameters.text_case}}"
    assert env["TILE_COUNT"]["value"] == "{{workflow.parameters.tile_count}}"
    assert env["INPUT_S3_PATH"]["value"] == "{{workflow.parameters.input_s3_path}}"
    # The item's PRIVATE prefix comes from the plan (several identifiers: <prefix>/<position>).
    assert env["S3_PREFIX"]["value"] == "{{inputs.parameters.s3_prefix}}"
    assert env["HOOK_IDENTIFIERS"]["value"] == "{{inputs.parameters.identifiers}}"
    assert env["HOOK_ORDER_ID"]["value"] == "{{workflow.name}}-{{inputs.parameters.position}}"


def _retried(expression: str, status: str, exit_code: str) -> bool:
    """Argo's retry expression (expr-lang) read as Python: this one uses only ``==``, ``and``,
    ``or``, ``in`` over a list literal and ``asInt``, which mean the same in both."""
    assert re.fullmatch(r'[\w\s."=()\[\],]+', expression), expression
    python = expression.replace("asInt(", "int(")
    last = types.SimpleNamespace(status=status, exitCode=exit_code)
    return bool(eval(python, {"__builtins__": {}, "int": int}, {"lastRetry": last}))


def test_retry_policy_retries_only_what_is_retryable(hello: dict[str, Any]) -> None:
    retry = run_template(hello)["retryStrategy"]
    assert retry["limit"] == 3 and retry["retryPolicy"] == "Always"
    assert retry["backoff"] == {"duration": "30s", "factor": 2, "maxDuration": "10m"}
    expression = retry["expression"]
    failed = {code for code in range(256) if _retried(expression, "Failed", str(code))}
    assert failed == {3, 5, 6, 137, 143}  # stage-in, publication, SIGTERM, killed
    assert not {0, 1, 2, 4} & failed  # never a bug, bad options or process() raising
    assert _retried(expression, "Error", "-1")  # a pod failure: Argo's "Error", no exit code


def test_deadline_and_resources(hello: dict[str, Any], generated: dict[str, Any]) -> None:
    assert run_template(hello)["activeDeadlineSeconds"] == 3600
    assert run_template(generated)["activeDeadlineSeconds"] == 900
    assert templates_by_name(hello)["plan"]["activeDeadlineSeconds"] == 300
    resources = run_template(hello)["container"]["resources"]
    assert resources == {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "4Gi"}}


def _dockerfile_user() -> tuple[int, int]:
    line = re.findall(r"(?m)^USER\s+(\d+):(\d+)\s*$", (REPO / "Dockerfile.base").read_text())[-1]
    return int(line[0]), int(line[1])


def test_security_context_and_the_writable_folders(hello: dict[str, Any]) -> None:
    uid, gid = _dockerfile_user()
    assert uid != 0
    pod = hello["spec"]["securityContext"]
    assert pod["runAsNonRoot"] is True and (pod["runAsUser"], pod["runAsGroup"]) == (uid, gid)
    assert pod["fsGroup"] == gid
    for name in ("plan", "run"):
        template = templates_by_name(hello)[name]
        body = template.get("container") or template["script"]
        context = body["securityContext"]
        assert context["runAsNonRoot"] is True
        assert (context["runAsUser"], context["runAsGroup"]) == (uid, gid)
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        volumes = {v["name"]: v for v in template["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in body["volumeMounts"]}
        assert set(mounts) == {"/work", "/tmp"}
        assert all(volumes[v] == {"name": v, "emptyDir": {}} for v in mounts.values())
    env = env_of(run_template(hello))
    # Where the runtime writes (work dir, result, HOME) is on the work emptyDir.
    assert env["HOOK_WORK_DIR"]["value"] == env["HOME"]["value"] == "/work"
    assert env["HOOK_RESULT_PATH"]["value"].startswith("/work/")


def test_fan_out_over_the_identifiers_with_a_parallelism_limit(generated: dict[str, Any]) -> None:
    assert generated["spec"]["parallelism"] == 7
    assert generated["spec"]["entrypoint"] == "order"
    order = templates_by_name(generated)["order"]
    assert order["parallelism"] == 7 and order["failFast"] is False
    (plan,), (item,) = order["steps"]
    assert plan["template"] == "plan"
    assert item["template"] == "run"
    assert item["withParam"] == "{{steps.plan.outputs.result}}"
    plan_env = env_of(templates_by_name(generated)["plan"])
    assert plan_env["IDENTIFIERS"]["value"] == "{{workflow.parameters.identifiers}}"


def test_the_result_json_is_an_output_parameter(hello: dict[str, Any]) -> None:
    run = run_template(hello)
    (result,) = run["outputs"]["parameters"]
    assert result["name"] == "result"
    assert result["valueFrom"]["path"] == env_of(run)["HOOK_RESULT_PATH"]["value"]
    assert json.loads(result["valueFrom"]["default"])["Status"] == "failed"


def _plan(hello: dict[str, Any], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    plan = templates_by_name(hello)["plan"]["script"]
    assert plan["command"] == ["python3"]
    script = tmp_path / "plan.py"
    script.write_text(plan["source"])
    return subprocess.run(
        [sys.executable, "-I", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ["PATH"], **env},
    )


def test_the_plan_step_makes_one_item_per_identifier(hello: dict[str, Any], tmp_path: Path) -> None:
    odd = 'S2A "quoted" {{workflow.name}} é'
    done = _plan(hello, tmp_path, IDENTIFIERS=json.dumps(["a", odd]), S3_PREFIX="out/")
    assert done.returncode == 0, done.stderr
    items = json.loads(done.stdout)
    assert [i["position"] for i in items] == ["1", "2"]
    assert [i["identifier"] for i in items] == ["a", odd]
    assert [json.loads(i["identifiers"]) for i in items] == [["a"], [odd]]
    assert [i["s3_prefix"] for i in items] == ["out/1", "out/2"]  # one output set per item
    one = json.loads(_plan(hello, tmp_path, IDENTIFIERS='["a"]', S3_PREFIX="out").stdout)
    assert one[0]["s3_prefix"] == "out"  # one identifier: the prefix itself, as serve does
    path = json.loads(
        _plan(hello, tmp_path, IDENTIFIERS='["a","b"]', OUTPUT_S3_PATH="s3://b/p").stdout
    )
    assert [(i["output_s3_path"], i["s3_prefix"]) for i in path] == [
        ("s3://b/p/1", ""),
        ("s3://b/p/2", ""),
    ]
    temporary = _plan(hello, tmp_path, IDENTIFIERS='["a","b"]', OUTPUT_STORAGE="temporary")
    assert {i["s3_prefix"] for i in json.loads(temporary.stdout)} == {""}


@pytest.mark.parametrize("identifiers", ["", "Custom Hook", "[]", '["a", 3]', '{"a": 1}'])
def test_the_plan_step_refuses_bad_identifiers_with_exit_2(
    hello: dict[str, Any], tmp_path: Path, identifiers: str
) -> None:
    done = _plan(hello, tmp_path, IDENTIFIERS=identifiers)
    assert done.returncode == 2  # never retried
    assert done.stdout == ""
    assert done.stderr.startswith("the identifiers parameter ") and done.stderr.count("\n") == 1


# --- output formats and bad input ------------------------------------------------------------


def test_json_with_a_json_file_and_yaml_otherwise(tmp_path: Path, hello: dict[str, Any]) -> None:
    assert export(HELLO, "-o", tmp_path / "t.json").returncode == 0
    assert export(HELLO, "-o", tmp_path / "t.yaml").returncode == 0
    assert json.loads((tmp_path / "t.json").read_text()) == hello
    assert yaml.safe_load((tmp_path / "t.yaml").read_text()) == hello
    assert (tmp_path / "t.yaml").read_text().startswith("apiVersion: argoproj.io/v1alpha1\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.json", "t.yaml"]  # no temp file left


def test_project_dir_defaults_to_the_current_folder(hello: dict[str, Any]) -> None:
    done = export(cwd=HELLO)
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load(done.stdout) == hello


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("empty folder", "is not a processor project (it has no pyproject.toml)"),
        ("missing folder", "is not a folder"),
        ("no such image", "--image hook-argo-no-such-image:argo"),
        ("bad image", "--image 'My Image': not a docker image reference"),
        ("parallelism 0", "Invalid value for '--parallelism': 0 is not in the range x>=1"),
        ("parallelism x", "Invalid value for '--parallelism': 'x' is not a valid integer"),
        ("deadline 0", "Invalid value for '--deadline'"),
        ("bad namespace", "--namespace 'Hook_NS': not a Kubernetes namespace name"),
        ("bad secret", "--secret 'my_secret': not a Kubernetes Secret name"),
        ("no output folder", "does not exist; create it first"),
    ],
)
def test_bad_input_is_one_message_and_exit_2(tmp_path: Path, case: str, expected: str) -> None:
    (tmp_path / "empty").mkdir()
    args: dict[str, list[str | Path]] = {
        "empty folder": [tmp_path / "empty"],
        "missing folder": [tmp_path / "nope"],
        "no such image": ["--image", "hook-argo-no-such-image:argo"],
        "bad image": [HELLO, "--image", "My Image"],
        "parallelism 0": [HELLO, "--parallelism", "0"],
        "parallelism x": [HELLO, "--parallelism", "x"],
        "deadline 0": [HELLO, "--deadline", "0"],
        "bad namespace": [HELLO, "--namespace", "Hook_NS"],
        "bad secret": [HELLO, "--secret", "my_secret"],
        "no output folder": [HELLO, "-o", tmp_path / "nope" / "t.yaml"],
    }
    done = export(*args[case], cwd=tmp_path / "empty")
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
    if case == "no such image" and "no Docker engine answers" in errors[0]:
        return  # no engine here: that is the one message then
    assert expected in errors[0], done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]  # nothing written


def test_the_readme_export_command_writes_a_valid_template(tmp_path: Path) -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("\n## Scale out\n") :]
    section = section[: section.index("\n## ", 1)]
    (block,) = [
        b
        for b in re.findall(r"\n```bash\n(.*?\n)```\n", section, flags=re.S)
        if b.startswith("hook-processor build examples/hello_world")
    ]
    # The build line needs a Docker engine and a Python image (tests/integration builds images);
    # the export line runs here as written.
    lines = block.replace("\\\n", " ").splitlines()
    assert lines[0].startswith("hook-processor build examples/hello_world")
    (command,) = [line for line in lines if line.startswith("hook-processor export argo ")]
    args = command.split("#")[0].split()[3:]
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "hello_world").symlink_to(HELLO)
    done = export(*args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    document = yaml.safe_load((tmp_path / "dedl_hello_world.yaml").read_text())
    assert schema_errors(document) == [] and reference_problems(document) == []
    assert document["metadata"]["namespace"] == "hook" and document["spec"]["parallelism"] == 8
    image = run_template(document)["container"]["image"]
    assert image == "registry.example.com/dedl_hello_world:1.1.0"
    # The Secret the README creates is the template's default one.
    assert "create secret generic dedl-hello-world-secrets" in section
    secrets = STANDARD_SECRETS | PLATFORM_SECRETS
    assert secret_problems(document, secrets, "dedl-hello-world-secrets") == []
    assert (
        "workflowtemplate/dedl-hello-world" in section
        and document["metadata"]["name"] == "dedl-hello-world"
    )
