"""``hook-processor describe``: the project's Workflow entry, as the Hook API lists it.

The entry has the keys, in the order, of one element of ``value`` in the DEDL answer to
``GET Workflows?$expand=WorkflowOptions`` (hook-contract.md §3.1, §3.2); the API wraps the entries
in ``{"@odata.context": ..., "value": [...]}``, we print the entry alone. Values come from the
project's ``[tool.hook-processor]`` table, the standard options and the author's options model.

What is not known locally, and what we chose (all ours, not the service's):

- ``Id``: the service assigns it when the workflow is registered (``"10"`` for dedl_hello_world).
  The contract's type is a string; we put the workflow ``Name`` there, a string that is unique
  per workflow. ``Uuid`` and ``Documentation`` are ``null``, as recorded for dedl_hello_world.
- ``InputProductType``: the table's ``input_product_type`` (default ``"*"``, as dedl_hello_world);
  ``InputProductTypes`` is the one-element list of it. Nothing declares an output product type,
  so ``OutputProductType`` is ``null`` and ``OutputProductTypes`` is ``[]``.
- ``CustomInputSource`` and ``InputProductStatusOffline``: ``false``, as for dedl_hello_world.

Each WorkflowOption has ``Name``, ``Description``, ``Type``, ``Default``, ``Value`` and
``Required``, in the current (Sept 2024) generation's shapes:

- ``Type`` is the Python type name, as the service's ``"str"``: ``str``, ``int``, ``float``,
  ``bool``, ``list``, ``dict``; choices take the type of their values; anything else is ``str``.
- ``Default`` is a string or ``null`` (the contract only shows strings): booleans become
  ``"true"``/``"false"``, other values ``str(value)``.
- ``Value`` lists the choices of a ``Literal`` or ``Enum`` as
  ``{"value": "...", "condition": null}``, and is ``null`` for free values.
- ``Required`` is ``true`` only when every order must set the option. Options needed only with
  ``output_storage=PRIVATE`` (the output bucket and its credentials) are ``false`` and their
  Description says "Required when output_storage is PRIVATE." (the live service marks its
  ``output_s3_*`` ``true`` and says so in the Description instead; ours stays true to TEMPORARY
  orders, which need none of them).
- The contract has no field for secrets. Ours: a secret's Description ends with ``(secret)``, and
  its ``Default`` is always ``null``.
- Standard options are listed under their canonical names; the Description names the other
  names the runtime accepts (``source_s3_path`` for ``input_s3_path``, ...).
- The contract has no field for STAC either. Whether a run publishes ``catalog.json`` (the STAC
  catalog of its outputs, ours: see :mod:`hook_processor.stac`) is a line of the table
  (``STAC catalog: ...``), not a key of the JSON: the JSON is the entry exactly as the API lists
  it, and ``serve`` lists the same entry.
- The contract has no field for constraints either, and we add no key: the constraints of an
  option (``ge``/``gt``/``le``/``lt``, ``multiple_of``, ``min_length``/``max_length``,
  ``pattern``) end its Description, e.g. ``Constraints: >= 1, <= 30.``
"""

from __future__ import annotations

import enum
import inspect
import json
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from hook_processor.loader import ProjectConfig, load_processor, read_project
from hook_processor.options import StandardOptions, option_aliases

SECRET_SUFFIX = "(secret)"
_PRIVATE = "Required when output_storage is PRIVATE"
PRIVATE_ONLY = _PRIVATE + "."

# Standard options that every order must set, and those that output_storage=PRIVATE needs.
_ALWAYS_REQUIRED = frozenset({"input_s3_path"})
_PRIVATE_REQUIRED = {
    "s3_bucket": _PRIVATE + " (this or output_s3_path).",
    "output_s3_path": _PRIVATE + " (this or s3_bucket).",
    "s3_access_key": PRIVATE_ONLY,
    "s3_secret_key": PRIVATE_ONLY,
}


def describe_project(root: Path) -> dict[str, Any]:
    """The Workflow entry of the project in ``root`` (imports ``process`` to find its options)."""
    project = read_project(root)
    processor = load_processor(project.entrypoint, search_path=project.root)
    return workflow_entry(project, processor.options_model)


def workflow_entry(project: ProjectConfig, options_model: type[BaseModel] | None) -> dict[str, Any]:
    """The Workflow entry with ``WorkflowOptions``: standard options first, then the author's."""
    options = [
        _standard_option(name, field) for name, field in StandardOptions.model_fields.items()
    ]
    if options_model is not None:
        options += [
            _option(option_aliases(options_model, name)[0], field, field.is_required())  # type: ignore[arg-type]
            for name, field in options_model.model_fields.items()
        ]
    return {
        "Id": project.name,
        "Uuid": None,
        "Name": project.name,
        "DisplayName": project.display_name or project.name,
        "Documentation": None,
        "Description": project.description or None,
        "InputProductType": project.input_product_type,
        "InputProductTypes": [project.input_product_type],
        "OutputProductType": None,
        "OutputProductTypes": [],
        "WorkflowVersion": project.version,
        "CustomInputSource": False,
        "InputProductStatusOffline": False,
        "WorkflowOptions": options,
    }


def to_json(entry: dict[str, Any]) -> str:
    return json.dumps(entry, indent=2, ensure_ascii=False)


def to_table(entry: dict[str, Any], *, stac_catalog: bool | None = None) -> str:
    """The entry for people: the workflow, then one row per option and its description.

    REQUIRED is ``yes``, ``no``, or ``PRIVATE`` for the options that output_storage=PRIVATE needs.
    ``stac_catalog``: the project's ``[tool.hook-processor] stac_catalog`` (None: no line).
    """
    lines = [
        f"{entry['DisplayName']} ({entry['Name']} {entry['WorkflowVersion']})",
        *([entry["Description"]] if entry["Description"] else []),
        f"InputProductType: {entry['InputProductType']}",
        *([] if stac_catalog is None else [_stac_line(stac_catalog)]),
        "",
        "WorkflowOptions:",
    ]
    rows = [("NAME", "TYPE", "REQUIRED", "DEFAULT", "VALUES")]
    for option in entry["WorkflowOptions"]:
        choices = "|".join(v["value"] for v in option["Value"] or [])
        default = "-" if option["Default"] is None else option["Default"]
        rows.append(
            (
                option["Name"],
                option["Type"],
                _required(option),
                default,
                choices or "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for index, row in enumerate(rows):
        lines.append(
            "  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        )
        if index and entry["WorkflowOptions"][index - 1]["Description"]:
            lines.append("      " + entry["WorkflowOptions"][index - 1]["Description"])
    return "\n".join(lines)


def _stac_line(on: bool) -> str:
    if on:
        return (
            "STAC catalog: yes, catalog.json (STAC 1.1) with the outputs "
            "([tool.hook-processor] stac_catalog = false turns it off)"
        )
    return "STAC catalog: no ([tool.hook-processor] stac_catalog = false)"


def _required(option: dict[str, Any]) -> str:
    if option["Required"]:
        return "yes"
    return "PRIVATE" if _PRIVATE in (option["Description"] or "") else "no"


def _standard_option(name: str, field: FieldInfo) -> dict[str, Any]:
    aliases = option_aliases(StandardOptions, name)
    notes = []
    if len(aliases) > 1:
        notes.append("Also accepted as " + ", ".join(aliases[1:]) + ".")
    if name in _PRIVATE_REQUIRED:
        notes.append(_PRIVATE_REQUIRED[name])
    return _option(aliases[0], field, required=name in _ALWAYS_REQUIRED, notes=notes)


def _option(
    name: str, field: FieldInfo, required: bool, notes: list[str] | None = None
) -> dict[str, Any]:
    annotation = _unwrap(field.annotation)
    secret = annotation is SecretStr
    choices = _choices(annotation)
    parts = [p for p in [(field.description or "").strip(), *(notes or [])] if p]
    constraints = _constraints(field)
    if constraints:
        parts.append("Constraints: " + ", ".join(constraints) + ".")
    if secret:
        parts.append(SECRET_SUFFIX)
    # Sentences: a period after each part that another part follows.
    description = " ".join(
        p if i == len(parts) - 1 or p.endswith((".", "!", "?")) else p + "."
        for i, p in enumerate(parts)
    )
    return {
        "Name": name,
        "Description": description or None,
        "Type": _type_name(annotation, choices),
        "Default": None if secret or required else _default(field),
        "Value": [{"value": _text(c), "condition": None} for c in choices] if choices else None,
        "Required": required,
    }


# Constraint attributes of annotated_types / pydantic metadata, and how each reads.
_CONSTRAINTS = (
    ("gt", "> {}"),
    ("ge", ">= {}"),
    ("lt", "< {}"),
    ("le", "<= {}"),
    ("multiple_of", "multiple of {}"),
    ("min_length", "length >= {}"),
    ("max_length", "length <= {}"),
    ("pattern", "matches '{}'"),
    ("max_digits", "at most {} digits"),
    ("decimal_places", "at most {} decimal places"),
)


def _constraints(field: FieldInfo) -> list[str]:
    """``[">= 1", "<= 30"]``: the field's own constraints and those of ``Annotated[...]`` inside."""
    items = list(field.metadata)
    pending = [field.annotation]
    while pending:
        annotation = pending.pop()
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            base, *extra = typing.get_args(annotation)
            pending.append(base)
            for item in extra:
                items += item.metadata if isinstance(item, FieldInfo) else [item]
        elif origin in (typing.Union, types.UnionType):
            pending += list(typing.get_args(annotation))
    found: list[str] = []
    for item in items:
        for attribute, text in _CONSTRAINTS:
            value = getattr(item, attribute, None)
            if value is not None and text.format(value) not in found:
                found.append(text.format(value))
    return found


def _unwrap(annotation: Any) -> Any:
    """``X | None`` -> X, ``Annotated[X, ...]`` -> X."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


def _choices(annotation: Any) -> list[Any]:
    if typing.get_origin(annotation) is typing.Literal:
        return [a.value if isinstance(a, enum.Enum) else a for a in typing.get_args(annotation)]
    if inspect.isclass(annotation) and issubclass(annotation, enum.Enum):
        return [member.value for member in annotation]
    return []


def _type_name(annotation: Any, choices: list[Any]) -> str:
    if choices:
        kinds = {_type_name(type(c), []) for c in choices}
        return kinds.pop() if len(kinds) == 1 else "str"
    origin = typing.get_origin(annotation) or annotation
    for kind, name in ((bool, "bool"), (int, "int"), (float, "float"), (str, "str")):
        if inspect.isclass(origin) and issubclass(origin, kind):
            return name
    if origin in (list, tuple, set, frozenset):
        return "list"
    if origin is dict:
        return "dict"
    return "str"


def _default(field: FieldInfo) -> str | None:
    if field.is_required():
        return None
    value = field.get_default(call_default_factory=True, validated_data={})
    if isinstance(value, enum.Enum):
        value = value.value
    return None if value is None else _text(value)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple, set, frozenset, dict)):
        return json.dumps(sorted(value) if isinstance(value, (set, frozenset)) else value)
    return str(value)
