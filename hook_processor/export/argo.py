"""The processor as an Argo WorkflowTemplate, built with hera (``hook-processor export argo``).

Target: Argo Workflows v4.0 (hera 7.x: its models are generated from Argo's v4.0.5 API; the
tests validate against v4.0.5's JSON schema). What the template does, all ours (the live Hook's
own templates are not public):

- **Fan-out**: the ``identifiers`` parameter (a JSON list) goes through the ``plan`` step
  (:mod:`hook_processor.export._argo_plan`, in the processor's image) and the ``item`` step runs
  the image once per identifier (``withParam``), at most ``parallelism`` at once (the fan-out
  template's and the workflow's ``parallelism``); ``failFast: false``, so one failed item does
  not stop the others, and the workflow fails if any item failed (as an order does).
- **Options**: every non-secret option of the workflow entry (``describe``: the standard options,
  then the author's) is a workflow parameter of the same name, reaching the runtime as the
  environment variable of that name upper-cased (as on the platform). A required option has no
  value (Argo asks for it at submission); an optional one without a default is ``""``, which the
  runtime reads as not given. Choices become the parameter's ``enum`` where its value is one of
  them.
- **Secrets**: every secret option (``SecretStr``, the standard S3 keys, the temporary storage's
  keys) comes from the Kubernetes Secret named by ``secret`` through ``secretKeyRef`` (key = the
  option's name, ``optional: true``: a key the Secret lacks is an option not given), never as a
  parameter or a literal value.
- **Order context**: ``HOOK_ORDER_ID`` is ``<Argo Workflow name>-<position>``, stable across
  retries of the item (so a retried pod that had already published is recognised and
  completes), and ``HOOK_ORDER_NAME`` the Argo Workflow's name (``<template name>-<random>``).
- **Retries** (:data:`RETRY_EXPRESSION`): an attempt is retried when Argo reports an error (a pod
  failure: deleted, evicted, node lost) or when the runtime's exit code is retryable: 3 (stage-in
  failed), 5 (publication failed), 6 (SIGTERM: a drain or preemption; ``argo stop`` does not
  retry), 137 and 143 (killed before or past the runtime's own handling). Never 0, 1 (a bug), 2
  (bad options) or 4 (``process`` raised): another attempt would fail the same way.
- **Pod**: ``activeDeadlineSeconds`` per attempt, resources, non-root as the image's user,
  read-only root file system with ``emptyDir`` volumes for the work dir (``/work``, also HOME:
  input, output, result) and ``/tmp``, no privilege escalation, every capability dropped, the
  runtime's default seccomp profile.
- **Result**: the runtime's result JSON (``HOOK_RESULT_PATH``) is the item's output parameter
  ``result``; a pod that ends before the runtime wrote it gives :data:`NO_RESULT`.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hera.workflows import (
    Container,
    EmptyDirVolume,
    Env,
    Parameter,
    Resources,
    RetryStrategy,
    Script,
    SecretEnv,
    Steps,
    WorkflowTemplate,
)
from hera.workflows import models as m

from hook_processor.describe import SECRET_SUFFIX
from hook_processor.errors import OptionsError

TARGET_ARGO = "v4.0"
IDENTIFIERS = "identifiers"
WORK_DIR = "/work"
RESULT_PATH = f"{WORK_DIR}/result.json"
ENTRYPOINT = "order"
PLAN, ITEM = "plan", "item"
RETRYABLE_EXIT_CODES = (3, 5, 6, 137, 143)
RETRY_EXPRESSION = (
    'lastRetry.status == "Error" or (lastRetry.status == "Failed" and '
    f"asInt(lastRetry.exitCode) in {list(RETRYABLE_EXIT_CODES)})"
)
RETRY_LIMIT = 3
NO_RESULT = json.dumps(
    {
        "Status": "failed",
        "StatusMessage": "the pod ended before the runtime wrote its result; see the step's log",
    }
)
# Platform settings the template passes: the temporary storage of output_storage=TEMPORARY.
TEMPORARY_STORAGE = (
    "hook_temporary_s3_endpoint_url",
    "hook_temporary_s3_bucket",
    "hook_temporary_s3_prefix",
)
TEMPORARY_SECRETS = ("hook_temporary_s3_access_key", "hook_temporary_s3_secret_key")
# Per item, from the plan (the PRIVATE prefix of an item of several: see _argo_plan).
_PER_ITEM = ("output_s3_path", "s3_prefix")
# Argo's rule for parameter names; Kubernetes' for the keys of a Secret.
_PARAMETER_NAME = re.compile(r"^[-a-zA-Z0-9_]+$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@dataclasses.dataclass(frozen=True)
class ImageUser:
    """The numeric user (and group) the image runs as: ``runAsNonRoot`` needs a number."""

    uid: int
    gid: int | None = None  # None: the image's own (USER uid without a group)


@dataclasses.dataclass(frozen=True)
class ArgoExport:
    """What the template is made of; :func:`workflow_template` builds it."""

    entry: dict[str, Any]  # describe's Workflow entry (a project's, or an image's label)
    image: str
    user: ImageUser
    namespace: str | None = None
    secret: str | None = None  # default: <template name>-secrets
    parallelism: int = 4
    deadline_seconds: int = 3600
    cpu_request: str = "1"
    memory_request: str = "1Gi"
    memory_limit: str = "4Gi"


def template_name(workflow_name: str) -> str:
    """The workflow name as a Kubernetes object name (``dedl_hello_world`` -> dedl-hello-world)."""
    name = re.sub(r"[^a-z0-9-]+", "-", workflow_name.lower()).strip("-")
    return name[:63].rstrip("-") or "processor"


# A docker image reference: [registry[:port]/]path[:tag][@sha256:digest] (distribution's grammar,
# its path components lowercase).
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE = re.compile(
    rf"^(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*(?::[0-9]+)?/)?{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$"
)


def check_image(image: str, given: bool) -> None:
    """OptionsError when ``image`` is no image reference a kubelet could pull."""
    if not _IMAGE.match(image):
        where = "--image" if given else "the default image (name:version of the project)"
        raise OptionsError(
            f"{where} {image!r}: not a docker image reference ([registry/]name[:tag], lowercase "
            "name); give one with --image, e.g. registry.example.com/my_processor:1.0.0"
        )


def check_names(namespace: str | None, secret: str | None) -> None:
    """OptionsError naming a namespace or Secret name Kubernetes would refuse."""
    if namespace is not None and not (len(namespace) <= 63 and _DNS_LABEL.match(namespace)):
        raise OptionsError(
            f"--namespace {namespace!r}: not a Kubernetes namespace name (lowercase letters, "
            "digits and '-', at most 63, starting and ending with a letter or digit)"
        )
    if secret is not None and not (len(secret) <= 253 and _DNS_SUBDOMAIN.match(secret)):
        raise OptionsError(
            f"--secret {secret!r}: not a Kubernetes Secret name (lowercase letters, digits, "
            "'-' and '.', at most 253, starting and ending with a letter or digit)"
        )


@dataclasses.dataclass(frozen=True)
class _Option:
    name: str
    secret: bool
    required: bool
    default: str | None
    choices: tuple[str, ...]
    description: str | None

    @property
    def env(self) -> str:
        return self.name.upper()


def _options(entry: dict[str, Any]) -> list[_Option]:
    found = []
    for raw in entry.get("WorkflowOptions") or []:
        name = str(raw["Name"])
        if not _PARAMETER_NAME.match(name) or name.lower() in {IDENTIFIERS, *TEMPORARY_STORAGE}:
            raise OptionsError(
                f"option {name!r} cannot be an Argo workflow parameter (a name of letters, "
                f"digits, '_' and '-', other than {IDENTIFIERS} and the hook_temporary_s3_* "
                "settings); rename it in the processor's options"
            )
        description = raw.get("Description")
        found.append(
            _Option(
                name=name,
                secret=str(description or "").endswith(SECRET_SUFFIX),
                required=bool(raw.get("Required")),
                default=raw.get("Default"),
                choices=tuple(str(c["value"]) for c in raw.get("Value") or []),
                description=description,
            )
        )
    return found


def _parameter(option: _Option) -> Parameter:
    """A required option has no value (Argo asks for it at submission); hera would write a None
    value as the text "null", so it is left out, not passed as None."""
    fields: dict[str, Any] = {"name": option.name, "description": option.description}
    if not option.required:
        fields["value"] = option.default or ""
    if option.choices and fields.get("value", option.choices[0]) in option.choices:
        fields["enum"] = list(option.choices)
    return Parameter(**fields)


def _security(user: ImageUser) -> m.SecurityContext:
    return m.SecurityContext(
        run_as_non_root=True,
        run_as_user=user.uid,
        run_as_group=user.gid,
        read_only_root_filesystem=True,
        allow_privilege_escalation=False,
        capabilities=m.Capabilities(drop=["ALL"]),
        seccomp_profile=m.SeccompProfile(type="RuntimeDefault"),
    )


def _volumes() -> list[EmptyDirVolume]:
    # The runtime writes only under its work dir (input/, output/, result.json, HOME) and, for an
    # author's tempfile, /tmp: both are emptyDirs, the root file system stays read-only.
    return [
        EmptyDirVolume(name="work", mount_path=WORK_DIR),
        EmptyDirVolume(name="tmp", mount_path="/tmp"),
    ]


def workflow_template(export: ArgoExport) -> dict[str, Any]:
    """The WorkflowTemplate as a plain dict (YAML or JSON is the caller's choice)."""
    check_names(export.namespace, export.secret)
    entry = export.entry
    workflow = str(entry["Name"])
    name = template_name(workflow)
    secret = export.secret or f"{name}-secrets"
    options = _options(entry)
    plain = [o for o in options if not o.secret]
    secrets = [o.name for o in options if o.secret] + list(TEMPORARY_SECRETS)
    retry = RetryStrategy(
        limit=RETRY_LIMIT,
        retry_policy="Always",
        expression=RETRY_EXPRESSION,
        backoff=m.Backoff(duration="30s", factor=m.IntOrString(2), max_duration="10m"),
    )
    arguments = [
        Parameter(
            name=IDENTIFIERS,
            description="The order's product identifiers, a JSON list of strings: one item each",
        ),
        *(_parameter(o) for o in plain),
        *(
            Parameter(name=s, value="", description="The platform's temporary storage (TEMPORARY)")
            for s in TEMPORARY_STORAGE
        ),
    ]
    common: dict[str, Any] = dict(
        image=export.image,
        security_context=_security(export.user),
        volumes=_volumes(),
        retry_strategy=retry,
    )
    with WorkflowTemplate(
        name=name,
        namespace=export.namespace,
        entrypoint=ENTRYPOINT,
        arguments=arguments,
        parallelism=export.parallelism,
        security_context=m.PodSecurityContext(
            run_as_non_root=True,
            run_as_user=export.user.uid,
            run_as_group=export.user.gid,
            fs_group=export.user.gid,  # the emptyDirs are writable by the user's group
            seccomp_profile=m.SeccompProfile(type="RuntimeDefault"),
        ),
        labels={"app.kubernetes.io/name": name, "app.kubernetes.io/managed-by": "hook-processor"},
        annotations={"hook-processor.io/workflow": workflow, "hook-processor.io/argo": TARGET_ARGO},
    ) as template:
        plan = Script(
            name=PLAN,
            command=["python3"],
            source=_plan_source(),
            env=[
                Env(name="IDENTIFIERS", value=f"{{{{workflow.parameters.{IDENTIFIERS}}}}}"),
                *(
                    Env(name=n.upper(), value=f"{{{{workflow.parameters.{n}}}}}")
                    for n in ("output_storage", *_PER_ITEM)
                    if any(o.name == n for o in plain)
                ),
            ],
            resources=Resources(cpu_request="100m", memory_request="64Mi", memory_limit="256Mi"),
            active_deadline_seconds=300,
            **common,
        )
        run = Container(
            name="run",
            inputs=[Parameter(name=n) for n in ("position", "identifier", IDENTIFIERS, *_PER_ITEM)],
            outputs=[
                Parameter(
                    name="result",
                    value_from=m.ValueFrom(path=RESULT_PATH, default=NO_RESULT),
                    description="The runtime's result JSON (status, products, timings)",
                )
            ],
            env=_item_env(workflow, plain, secrets, secret),
            resources=Resources(
                cpu_request=export.cpu_request,
                memory_request=export.memory_request,
                memory_limit=export.memory_limit,
            ),
            active_deadline_seconds=export.deadline_seconds,
            **common,
        )
        with Steps(name=ENTRYPOINT, parallelism=export.parallelism, fail_fast=False):
            plan(name=PLAN)
            run(
                name=ITEM,
                with_param=f"{{{{steps.{PLAN}.outputs.result}}}}",
                arguments={
                    n: f"{{{{item.{n}}}}}"
                    for n in ("position", "identifier", IDENTIFIERS, *_PER_ITEM)
                },
            )
    document: dict[str, Any] = template.to_dict()
    return document


def _item_env(
    workflow: str, plain: Sequence[_Option], secrets: Sequence[str], secret: str
) -> list[Env | SecretEnv]:
    env: list[Env | SecretEnv] = []
    for option in plain:
        source = "inputs" if option.name in _PER_ITEM else "workflow"
        env.append(Env(name=option.env, value=f"{{{{{source}.parameters.{option.name}}}}}"))
    env += [
        Env(name=n.upper(), value=f"{{{{workflow.parameters.{n}}}}}") for n in TEMPORARY_STORAGE
    ]
    env += [
        SecretEnv(name=n.upper(), secret_name=secret, secret_key=n, optional=True) for n in secrets
    ]
    env += [
        Env(name="HOOK_WORK_DIR", value=WORK_DIR),
        Env(name="HOOK_RESULT_PATH", value=RESULT_PATH),
        Env(name="HOME", value=WORK_DIR),
        Env(name="HOOK_WORKFLOW_NAME", value=workflow),
        Env(name="HOOK_ORDER_NAME", value="{{workflow.name}}"),
        Env(name="HOOK_ORDER_ID", value="{{workflow.name}}-{{inputs.parameters.position}}"),
        Env(name="HOOK_IDENTIFIERS", value=f"{{{{inputs.parameters.{IDENTIFIERS}}}}}"),
    ]
    return env


def _plan_source() -> str:
    return (Path(__file__).with_name("_argo_plan.py")).read_text(encoding="utf-8")
