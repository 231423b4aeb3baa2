"""Offline validation of a WorkflowTemplate: Argo's own JSON schema, plus what it does not check.

No Kubernetes API server or Argo controller can run here, and ``argo lint --offline`` is a Go
binary that is not available: the JSON schema Argo publishes for its resources, of the release we
target, is vendored in tests/export/argo_v4.0.5/. It does not check references (an entrypoint or
a step's template that does not exist), the ``{{...}}`` tags a template uses, or where secrets
are: :func:`reference_problems` and :func:`secret_problems` do.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema

SCHEMA = Path(__file__).resolve().parent / "export" / "argo_v4.0.5" / "schema.json"
WORKFLOW_TEMPLATE = "io.argoproj.workflow.v1alpha1.WorkflowTemplate"
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
TEMPLATE_KINDS = ("container", "script", "steps", "dag", "resource", "suspend", "data", "http")


def raw_schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMA.read_text(encoding="utf-8"))
    return loaded


@functools.cache
def argo_schema() -> dict[str, Any]:
    """The vendored schema with its known IntOrString quirk patched, in memory.

    Kubernetes' IntOrString (``activeDeadlineSeconds``, ``retryStrategy.limit``,
    ``backoff.factor``) is an integer or a string; Argo's generated JSON schema types it as a
    string only, so the integers hera writes there (and Argo's own examples use, e.g.
    ``activeDeadlineSeconds: 10``) would fail falsely. The patch accepts both, as Kubernetes
    does; nothing else of the schema is changed.
    """
    schema = copy.deepcopy(raw_schema())
    assert schema["definitions"][INT_OR_STRING] == {"type": "string"}, "the quirk moved: recheck"
    schema["definitions"][INT_OR_STRING] = {"type": ["integer", "string"]}
    return schema


def schema_errors(document: dict[str, Any], schema: dict[str, Any] | None = None) -> list[str]:
    """Every schema error, with where it is (``spec.templates.1.retryStrategy.limit: ...``).

    The schema's top level is a ``oneOf`` of Argo's kinds, whose error names no field: the
    document is checked against the WorkflowTemplate definition for the details, and against
    the whole schema too (its ``kind`` must pick exactly one of them)."""
    schema = schema or argo_schema()
    template = {
        "$schema": schema["$schema"],
        "definitions": schema["definitions"],
        "$ref": f"#/definitions/{WORKFLOW_TEMPLATE}",
    }
    errors = sorted(
        ".".join(str(p) for p in error.absolute_path) + ": " + error.message
        for error in jsonschema.Draft202012Validator(template).iter_errors(document)
    )
    if not errors and not jsonschema.Draft202012Validator(schema).is_valid(document):
        errors.append(": not exactly one of the kinds of Argo's schema")
    return errors


_TAG = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def _names(parameters: list[dict[str, Any]] | None) -> set[str]:
    return {p["name"] for p in parameters or []}


def reference_problems(document: dict[str, Any]) -> list[str]:
    """What Argo would refuse at submission that the schema lets pass: the entrypoint and every
    step's template exist, every tag a template uses names something declared."""
    spec = document["spec"]
    templates = {t["name"]: t for t in spec["templates"]}
    problems = []
    if spec.get("entrypoint") not in templates:
        problems.append(f"entrypoint {spec.get('entrypoint')!r} is not a template")
    if len(templates) != len(spec["templates"]):
        problems.append("two templates share a name")
    workflow_parameters = _names(spec.get("arguments", {}).get("parameters"))
    for name, template in templates.items():
        kinds = [k for k in TEMPLATE_KINDS if k in template]
        if len(kinds) != 1:
            problems.append(f"template {name}: {len(kinds)} kinds ({kinds}); needs exactly one")
        inputs = _names(template.get("inputs", {}).get("parameters"))
        steps = [s for group in template.get("steps") or [] for s in group]
        step_names = {s["name"] for s in steps}
        for step in steps:
            if step.get("template") not in templates:
                problems.append(
                    f"template {name}: step {step['name']} runs unknown template "
                    f"{step.get('template')!r}"
                )
                continue
            wanted = _names(templates[step["template"]].get("inputs", {}).get("parameters"))
            given = _names(step.get("arguments", {}).get("parameters"))
            if wanted - given:
                problems.append(f"step {step['name']}: inputs {sorted(wanted - given)} not given")
            if given - wanted:
                problems.append(f"step {step['name']}: arguments {sorted(given - wanted)} unknown")
            loops = "withParam" in step or "withItems" in step
            for text in _strings(step.get("arguments")):
                if "{{item" in text and not loops:
                    problems.append(f"step {step['name']}: uses {{{{item}}}} without a loop")
        for text in _strings({k: v for k, v in template.items() if k != "steps"} | {"s": steps}):
            for tag in _TAG.findall(text):
                problem = _tag_problem(
                    tag, inputs, workflow_parameters, step_names, templates, steps
                )
                if problem:
                    problems.append(f"template {name}: {{{{{tag}}}}} {problem}")
    return problems


def _tag_problem(
    tag: str,
    inputs: set[str],
    workflow_parameters: set[str],
    step_names: set[str],
    templates: dict[str, Any],
    steps: list[dict[str, Any]],
) -> str | None:
    parts = tag.split(".")
    if parts[:2] == ["inputs", "parameters"]:
        return None if len(parts) == 3 and parts[2] in inputs else "is not an input parameter"
    if parts[:2] == ["workflow", "parameters"]:
        ok = len(parts) == 3 and parts[2] in workflow_parameters
        return None if ok else "is not a workflow parameter"
    if parts[0] == "steps":
        if len(parts) < 3 or parts[1] not in step_names:
            return "names no step of this template"
        step = next(s for s in steps if s["name"] == parts[1])
        produced = templates[step["template"]]
        if parts[2:] == ["outputs", "result"]:
            return None if "script" in produced or "container" in produced else "has no result"
        if parts[2:4] == ["outputs", "parameters"] and len(parts) == 5:
            declared = _names(produced.get("outputs", {}).get("parameters"))
            return None if parts[4] in declared else "is not an output parameter"
        return "is not a known step output"
    if parts[0] == "item":
        return None  # checked per step above (a loop must give it)
    if tag in ("workflow.name", "workflow.namespace", "workflow.uid"):
        return None
    return "is not a tag these checks know (add it here when it is right)"


def secret_problems(document: dict[str, Any], secret_names: set[str], secret: str) -> list[str]:
    """Secrets only through ``secretKeyRef`` of ``secret``: no parameter is named like one, no
    environment variable named like one has a literal value, each comes from the Secret."""
    spec = document["spec"]
    secret_names = {n.lower() for n in secret_names}
    problems = []
    parameters = list(spec.get("arguments", {}).get("parameters") or [])
    for template in spec["templates"]:
        parameters += template.get("inputs", {}).get("parameters") or []
        parameters += template.get("outputs", {}).get("parameters") or []
    for parameter in parameters:
        if parameter["name"].lower() in secret_names:
            problems.append(f"secret {parameter['name']} is a parameter")
    seen = set()
    for template in spec["templates"]:
        body = template.get("container") or template.get("script") or {}
        for env in body.get("env") or []:
            name = env["name"].lower()
            if name not in secret_names:
                continue
            seen.add(name)
            reference = (env.get("valueFrom") or {}).get("secretKeyRef")
            if "value" in env or reference is None:
                problems.append(f"template {template['name']}: {env['name']} is not a secretKeyRef")
            elif reference.get("name") != secret or reference.get("key", "").lower() != name:
                problems.append(f"template {template['name']}: {env['name']} from {reference}")
    for missing in sorted(secret_names - seen):
        problems.append(f"secret {missing} reaches no container")
    return problems


def templates_by_name(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in document["spec"]["templates"]}
