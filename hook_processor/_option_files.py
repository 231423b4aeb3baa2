"""The options file (an order body or a ``{name: value}`` object) and ``--option`` pairs.

Re-exported by :mod:`hook_processor.options`. A name given twice with different values is an
OptionsError naming it, never last-wins: an order body edited by hand easily keeps an old entry.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hook_processor.errors import OptionsError


def parse_cli_options(pairs: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``["NAME=VALUE", ...]`` -> dict; a pair without ``=``, or one name given twice with
    different values, is an OptionsError."""
    parsed: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise OptionsError(f"--option expects NAME=VALUE, got {name.strip()!r} without '='")
        twice = next((n for n in parsed if n.lower() == name.strip().lower()), None)
        if twice is not None and parsed[twice] != value:
            raise OptionsError(
                f"--option {name.strip()}: given twice with different values; keep one"
            )
        parsed[twice or name.strip()] = value
    return parsed


def read_options_file(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read an options file: returns (options, order fields of an order body).

    An option given twice (a ``WorkflowOptions`` name, names compared ignoring case, or a key
    of a JSON object) with different values is an OptionsError naming it; with the same value
    it is kept once (:func:`options_file_repeats` names it for the log).
    """
    return _read_options_file(path)[:2]


def options_file_repeats(path: Path) -> list[str]:
    """The names an options file gives twice with the same value."""
    return _read_options_file(path)[2]


def _read_options_file(path: Path) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    repeats: list[str] = []
    twice: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in items:
            if key in seen:
                (repeats if seen[key] == value else twice).append(key)
            seen[key] = value
        return seen

    try:
        data = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=pairs)
    except FileNotFoundError:
        raise OptionsError(f"--options-file {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise OptionsError(
            f"--options-file {path}: cannot read it ({exc.__class__.__name__})"
        ) from None
    except json.JSONDecodeError as exc:
        raise OptionsError(
            f"--options-file {path}: not valid JSON "
            f"(line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    if not isinstance(data, dict):
        raise OptionsError(
            f"--options-file {path}: expected a JSON object (an order body with WorkflowOptions, "
            "or {name: value})"
        )
    if "WorkflowOptions" in data and isinstance(data["WorkflowOptions"], list):
        by_name: dict[str, Any] = {}
        for item in data["WorkflowOptions"]:
            if not (isinstance(item, dict) and isinstance(item.get("Name"), str)):
                continue
            key = item["Name"].strip().lower()
            if key in by_name:
                (repeats if by_name[key] == item.get("Value") else twice).append(item["Name"])
            by_name[key] = item.get("Value")
    if twice:
        raise OptionsError(
            f"--options-file {path}: {', '.join(dict.fromkeys(twice))} given twice with "
            "different values; keep one"
        )
    repeats = list(dict.fromkeys(repeats))
    if "WorkflowOptions" not in data:
        return data, {}, repeats
    items = data["WorkflowOptions"]
    options: dict[str, Any] = {}
    if not isinstance(items, list) or not all(
        isinstance(i, dict) and isinstance(i.get("Name"), str) and "Value" in i for i in items
    ):
        raise OptionsError(
            f"--options-file {path}: WorkflowOptions must be a list of "
            '{"Name": ..., "Value": ...}'
        )
    for item in items:
        options[item["Name"]] = item["Value"]
    order = {
        k: data[k]
        for k in ("Id", "Name", "WorkflowName", "IdentifierList", "Priority")
        if k in data
    }
    return options, order, repeats
