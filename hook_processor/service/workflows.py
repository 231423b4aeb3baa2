"""The served processors as Workflows: project folders, images, and the built-in ``odp-test``.

Each workflow's ``entry`` is what ``hook-processor describe`` prints (the Workflow JSON of
``GET Workflows?$expand=WorkflowOptions``, hook-contract.md §3.1/§3.2), with one change: ``Id``.
The live service assigns it when a workflow is registered (a string, ``"10"``); ours assigns
``"1"``, ``"2"``, ... in the order the workflows are given (project folders, then images, then
``odp-test`` last), and orders carry it as the integer ``WorkflowId``.

Options are validated when an order is posted by the runtime's own loader
(:func:`hook_processor.options.load_config`) with the processor's own options model, on the
environment the item will run with (:func:`option_env`): the same decoding, the same rules, the
same messages; nothing here re-implements a rule. What is ours:

- an unknown option name is refused (422), not ignored with a warning as ``exec`` does: an order
  is where a typo must be caught (``HOOK_STRICT_OPTIONS=1``);
- a ``HOOK_*`` name is a platform setting, not a WorkflowOption: refused;
- an order that names no input endpoint reads from the service's S3 (the embedded one, or
  ``--s3-endpoint``) with its credentials; one that names no endpoint at all writes its PRIVATE
  output there too (:func:`option_env`);
- ``odp-test`` defaults ``output_storage`` to ``TEMPORARY`` (its orders need no bucket).

For an image, the options model is not importable here: it is rebuilt from the image's workflow
label (types, choices, required, defaults, secrets). The constraints that only its Description
states (``Constraints: >= 1``) are checked by the runtime in the container (the item fails, exit
2, with the runtime's message).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, create_model

from hook_processor.errors import OptionsError, UserError
from hook_processor.options import (
    SECRET_OPTIONS,
    Options,
    OptionSources,
    StandardOptions,
    load_config,
    option_aliases,
)
from hook_processor.service.store import Store

ODP_TEST = "odp-test"
# What validation runs with in place of the real storage (only the options' shapes are checked).
_PLACEHOLDER_ENDPOINT = "http://127.0.0.1:9"
TEMPORARY_BUCKET = "hook-temporary"
ODP_TEST_INPUT = "s3://hook-input/odp-test/"

_STANDARD = {
    alias.lower(): name
    for name in StandardOptions.model_fields
    for alias in option_aliases(StandardOptions, name)
}
_DETAIL_HEADER = "the options are not valid; nothing was transferred:"


@dataclasses.dataclass(frozen=True)
class Storage:
    """The service's S3 (the embedded one or ``--s3-endpoint``) as an item's run gets it."""

    endpoint_url: str
    access_key: str
    secret_key: str
    temporary_bucket: str = TEMPORARY_BUCKET


_PLACEHOLDER = Storage(_PLACEHOLDER_ENDPOINT, "placeholder", "placeholder")


@dataclasses.dataclass(frozen=True)
class Workflow:
    """One served workflow; ``entry`` is describe's entry with our ``Id``."""

    name: str
    entry: dict[str, Any]
    source: str  # "project:<abs dir>" | "image:<ref>" | "builtin:odp-test"
    project_dir: Path | None = None
    image: str | None = None
    options_model: type[Options] | None = dataclasses.field(default=None, compare=False)
    defaults: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """ours: options the service gives when the order does not (odp-test: TEMPORARY output)."""

    @property
    def id(self) -> int:
        return int(self.entry["Id"])

    @property
    def entrypoint(self) -> str | None:
        """module:function to run (the built-in odp-test's); None: the project's own."""
        from hook_processor.service import _odp_test

        return _odp_test.ENTRYPOINT if self.source == "builtin:" + ODP_TEST else None

    def secret_names(self) -> frozenset[str]:
        """Lower-case names (every alias) of the secret options: never echoed."""
        names = set(SECRET_OPTIONS)
        model = self.options_model
        if model is not None:
            for name, field in model.model_fields.items():
                if _is_secret(field.annotation):
                    names.update(a.lower() for a in option_aliases(model, name))
        return frozenset(names)

    def validate(self, options: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """``[]``, or one FastAPI-style entry ``{"loc", "msg", "type"}`` per bad option; ``loc``
        is ``["body", "WorkflowOptions", <index in the list>]``, or the option's name when the
        order does not give it (a required option). Messages never hold a value."""
        names = [str(o.get("Name", "")) for o in options]
        by_loc: dict[Any, dict[str, Any]] = {}

        def add(loc: Any, msg: str, kind: str) -> None:
            if loc in by_loc:  # one entry per option: its problems joined
                by_loc[loc]["msg"] += "; " + msg
            else:
                by_loc[loc] = {"loc": ["body", "WorkflowOptions", loc], "msg": msg, "type": kind}

        for index, name in enumerate(names):
            if _is_setting(name):
                add(
                    index,
                    f"{name}: a platform setting (HOOK_*), not a WorkflowOption; remove it",
                    "value_error",
                )
        first: dict[str, int] = {}
        kept = []
        for index, option in enumerate(options):
            name = str(option.get("Name"))
            key = _canonical(name, self.options_model)
            if key in first:
                add(
                    index,
                    f"{name}: given twice in WorkflowOptions (also at {first[key]}); give it once",
                    "value_error",
                )
            elif not _is_setting(name):
                first[key] = index
                kept.append(option)
        env = option_env(self, kept, _PLACEHOLDER)
        try:
            load_config(OptionSources(env=env), self.options_model)
        except OptionsError as exc:
            for problem in _problems(str(exc)):
                loc = _locate(problem, names, self.options_model)
                add(loc, problem, _kind(problem))
        return list(by_loc.values())


def option_env(
    workflow: Workflow,
    options: Sequence[Mapping[str, Any]],
    storage: Storage,
    *,
    odp_test_input: str = ODP_TEST_INPUT,
) -> dict[str, str]:
    """The item's options as environment variables (as the platform gives them), the service's
    defaults where the order is silent (see the module doc), HOOK_GIVEN_OPTIONS (the names, so
    the runtime names an unknown one) and HOOK_STRICT_OPTIONS, and the temporary storage."""
    from hook_processor._option_names import GIVEN_OPTIONS, encode_given

    given: dict[str, str] = {}
    for option in options:
        value = option.get("Value")
        if value is None:  # "Value": null is not given, as in an options file
            continue
        given[str(option["Name"]).strip()] = value if isinstance(value, str) else json.dumps(value)
    canonical = {_STANDARD.get(n.lower(), n.lower()) for n in given}
    # As given (the runtime reads names in any case): its messages then name the option as the
    # order does.
    env = dict(given)

    def default(name: str, value: str) -> None:
        if name not in canonical:
            env[name.upper()] = value
            canonical.add(name)

    for name, value in workflow.defaults.items():
        default(name, value)
    if workflow.source == "builtin:" + ODP_TEST:
        default("input_s3_path", odp_test_input)
    if "input_s3_endpoint_url" not in canonical:
        default("input_s3_endpoint_url", storage.endpoint_url)
        if not {"input_s3_access_key", "input_s3_secret_key"} & canonical:
            default("input_s3_access_key", storage.access_key)
            default("input_s3_secret_key", storage.secret_key)
        if "s3_endpoint_url" not in canonical:
            default("s3_endpoint_url", storage.endpoint_url)
            if not {"s3_access_key", "s3_secret_key"} & canonical:
                default("s3_access_key", storage.access_key)
                default("s3_secret_key", storage.secret_key)
    env[GIVEN_OPTIONS] = encode_given((name, "WorkflowOptions") for name in given)
    env["HOOK_STRICT_OPTIONS"] = "1"
    env["HOOK_TEMPORARY_S3_ENDPOINT_URL"] = storage.endpoint_url
    env["HOOK_TEMPORARY_S3_ACCESS_KEY"] = storage.access_key
    env["HOOK_TEMPORARY_S3_SECRET_KEY"] = storage.secret_key
    env["HOOK_TEMPORARY_S3_BUCKET"] = storage.temporary_bucket
    return env


def _problems(message: str) -> list[str]:
    """The ``  - problem`` lines of load_config's OptionsError (continuation lines joined)."""
    problems: list[str] = []
    for line in message.splitlines():
        if line.startswith("  - "):
            problems.append(line[4:])
        elif problems and line.strip() and line.strip() != _DETAIL_HEADER:
            problems[-1] += " " + line.strip()
    if not problems:
        problems = [message.strip()]
    problems = [
        p.replace(" (from the environment)", "")
        for p in problems
        if not p.startswith("HOOK_STRICT_OPTIONS=1 refuses")  # our rule, not the user's setting
    ]
    return problems


def _locate(problem: str, names: Sequence[str], model: type[Options] | None) -> Any:
    """The index of the order's option a problem is about (the one named first), else the name
    of the option it names (a missing one), else ``"WorkflowOptions"`` itself."""
    head = problem.split(": ", 1)[0] if ": " in problem else problem
    lowered = head.lower()
    best: tuple[int, Any] | None = None
    for index, name in enumerate(names):
        for alias in _aliases(name, model):
            match = re.search(rf"(?<![\w]){re.escape(alias)}(?![\w])", lowered)
            if match and (best is None or match.start() < best[0]):
                best = (match.start(), index)
    if best is not None:
        return best[1]
    known = [*StandardOptions.model_fields, *(model.model_fields if model else ())]
    for name in known:
        if re.search(rf"(?<![\w]){re.escape(name)}(?![\w])", lowered):
            return name
    return "WorkflowOptions"


def _canonical(name: str, model: type[Options] | None) -> str:
    key = name.strip().lower()
    if key in _STANDARD:
        return _STANDARD[key]
    if model is not None:
        for field in model.model_fields:
            if key in {a.lower() for a in option_aliases(model, field)} | {field}:
                return field
    return key


def _aliases(name: str, model: type[Options] | None) -> set[str]:
    key = name.strip().lower()
    if key in _STANDARD:
        return {a.lower() for a in option_aliases(StandardOptions, _STANDARD[key])}
    if model is not None and key in model.model_fields:
        return {a.lower() for a in option_aliases(model, key)} | {key}
    return {key} if key else set()


def _kind(problem: str) -> str:
    if problem.startswith("unknown option"):
        return "extra_forbidden"
    if "required" in problem.split(": ", 1)[-1][:40]:
        return "missing"
    return "value_error"


def _is_setting(name: str) -> bool:
    return name.strip().lower().startswith("hook_")


def _is_secret(annotation: Any) -> bool:
    return annotation is SecretStr or annotation == SecretStr | None


# --- loading ---------------------------------------------------------------------------------


def load_workflows(project_dirs: Sequence[Path], images: Sequence[str]) -> list[Workflow]:
    """The project folders' and images' workflows, then ``odp-test``; Ids "1", "2", ... in that
    order. A folder or image that cannot be described is a UserError naming it and the fix."""
    found: list[Workflow] = []
    for number, directory in enumerate(project_dirs, start=1):
        found.append(_project_workflow(Path(directory), str(number)))
    for number, image in enumerate(images, start=len(found) + 1):
        found.append(_image_workflow(image, str(number)))
    found.append(odp_test_workflow(str(len(found) + 1)))
    seen: dict[str, str] = {}
    for workflow in found:
        if workflow.name in seen:
            raise UserError(
                f"two served workflows are named {workflow.name!r} ({seen[workflow.name]} and "
                f"{workflow.source}); serve one of them, or rename it in its [tool.hook-processor]"
            )
        seen[workflow.name] = workflow.source
    return found


def _project_workflow(directory: Path, workflow_id: str) -> Workflow:
    from hook_processor._modes import isolated_imports
    from hook_processor.describe import workflow_entry
    from hook_processor.loader import load_processor, read_project

    root = directory.resolve()
    if not root.is_dir():
        raise UserError(
            f"project folder {directory} does not exist; give the folder of a processor "
            "(the one with pyproject.toml)"
        )
    try:
        project = read_project(root)
        # The project's modules are imported for its options model and forgotten afterwards:
        # another served project may have a module of the same name (see isolated_imports).
        with isolated_imports(root, project.entrypoint):
            processor = load_processor(project.entrypoint, search_path=root)
    except OptionsError as exc:
        raise UserError(f"project folder {directory}: {exc}") from None
    entry = {**workflow_entry(project, processor.options_model), "Id": workflow_id}
    return Workflow(
        name=project.name,
        entry=entry,
        source=f"project:{root}",
        project_dir=root,
        options_model=processor.options_model,
    )


def _image_workflow(image: str, workflow_id: str) -> Workflow:
    from hook_processor.container import LABEL_WORKFLOW, _image, connect

    client = connect()
    try:
        found = _image(client, image)
        labels = dict(found.labels or {}) if found is not None else None
    finally:
        client.close()
    if labels is None:
        raise UserError(
            f"--image {image}: not in the local engine; build it with hook-processor build "
            "(or docker pull it), then try again"
        )
    raw = labels.get(LABEL_WORKFLOW)
    if not raw:
        raise UserError(
            f"--image {image}: it has no {LABEL_WORKFLOW} label, so its workflow and options are "
            "unknown; build it with hook-processor build (which adds the label)"
        )
    try:
        entry = json.loads(raw)
        name = str(entry["Name"])
        model = _model_from_entry(name, entry.get("WorkflowOptions") or [])
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(
            f"--image {image}: its {LABEL_WORKFLOW} label is not a workflow entry ({exc}); "
            "rebuild it with hook-processor build"
        ) from None
    return Workflow(
        name=name,
        entry={**entry, "Id": workflow_id},
        source=f"image:{image}",
        image=image,
        options_model=model,
    )


_TYPES: dict[str, type] = {"str": str, "int": int, "float": float, "bool": bool}


def _model_from_entry(name: str, options: Sequence[Mapping[str, Any]]) -> type[Options] | None:
    """The processor's options model as its WorkflowOptions describe it (an image's own model
    is inside the image): type, choices, required, default, secret."""
    from hook_processor.describe import SECRET_SUFFIX

    fields: dict[str, Any] = {}
    for option in options:
        option_name = str(option["Name"])
        if option_name.lower() in _STANDARD:
            continue
        kind: Any = _TYPES.get(str(option.get("Type")), Any)
        if option.get("Type") in ("list", "dict"):
            kind = list[Any] if option["Type"] == "list" else dict[str, Any]
        if str(option.get("Description") or "").endswith(SECRET_SUFFIX):
            kind = SecretStr
        choices = [c["value"] for c in option.get("Value") or [] if isinstance(c, Mapping)]
        if choices and kind in (int, float, str):
            kind = Literal[tuple(kind(c) for c in choices)]
        if option.get("Required"):
            fields[option_name] = (kind, Field(...))
        else:
            default = option.get("Default")
            if default is not None and kind is not SecretStr and option.get("Type") != "str":
                with contextlib.suppress(ValueError):  # describe writes JSON-compatible text
                    default = json.loads(default)
            fields[option_name] = (kind | None, Field(default))
    if not fields:
        return None
    model: type[Options] = create_model(
        f"{re.sub(r'[^A-Za-z0-9_]', '_', name)}_options", __base__=Options, **fields
    )
    return model


def odp_test_workflow(workflow_id: str) -> Workflow:
    """The built-in ``odp-test``: the recorded entry (hook-contract.md §3.1), our options."""
    from hook_processor.describe import workflow_entry
    from hook_processor.loader import ProjectConfig
    from hook_processor.service import _odp_test

    project = ProjectConfig(
        root=Path("."), name=ODP_TEST, entrypoint=_odp_test.ENTRYPOINT, version="1.0.0"
    )
    entry = workflow_entry(project, _odp_test.OdpTestOptions)
    input_names = {"input_s3_endpoint_url", "input_s3_path"} | {
        n for n in StandardOptions.model_fields if n.startswith("input_")
    }
    entry.update(
        Id=workflow_id,
        DisplayName="ODP Test",
        Description=None,
        InputProductType=None,
        InputProductTypes=[],
        # ours: sleep_time and the standard output options (odp-test reads no input)
        WorkflowOptions=[o for o in entry["WorkflowOptions"] if o["Name"] not in input_names],
    )
    for option in entry["WorkflowOptions"]:
        if option["Name"] == "output_storage":
            option["Default"] = "TEMPORARY"
    return Workflow(
        name=ODP_TEST,
        entry=entry,
        source="builtin:" + ODP_TEST,
        options_model=_odp_test.OdpTestOptions,
        defaults={"output_storage": "TEMPORARY"},
    )


def sync_workflows(store: Store, workflows: Sequence[Workflow]) -> None:
    """Rewrite the ``workflows`` table with these (orders keep their copied workflow fields)."""
    with store.write() as db:
        db.execute("DELETE FROM workflows")
        for workflow in workflows:
            entry = workflow.entry
            db.execute(
                "INSERT INTO workflows (Id, Name, DisplayName, Description, Documentation, "
                "InputProductType, OutputProductType, WorkflowVersion, CustomInputSource, "
                "InputProductStatusOffline, entry_json, source) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    str(entry["Id"]),
                    workflow.name,
                    entry.get("DisplayName"),
                    entry.get("Description"),
                    entry.get("Documentation"),
                    entry.get("InputProductType"),
                    entry.get("OutputProductType"),
                    entry.get("WorkflowVersion"),
                    int(bool(entry.get("CustomInputSource"))),
                    int(bool(entry.get("InputProductStatusOffline"))),
                    json.dumps(entry, ensure_ascii=False),
                    workflow.source,
                ),
            )
