"""Option values: one decoding for every source, and choices in any case.

The environment is read by pydantic-settings' own source, bound to the mapping the caller passes.
Its decoding (JSON for list, dict and model fields; the text itself for the others, which
validation then parses) is applied to the options file's and ``--option``'s values too, so that
``tags=["a","b"]``, ``sleep=3`` and ``flag=true`` mean the same from every source, and the same
as in ``hook-processor run``, which hands every option to the runtime as an environment variable.
"""

from __future__ import annotations

import contextlib
import contextvars
import enum
import json
import types
import typing
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource

_environment: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar("environment")

# Pydantic's error types for a value that is not a list / a mapping: such options take JSON.
_JSON_EXAMPLES = {
    **dict.fromkeys(("list_type", "tuple_type", "set_type", "frozen_set_type"), '["a", "b"]'),
    **dict.fromkeys(("dict_type", "model_type", "model_attributes_type"), '{"key": "value"}'),
}


class MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source, reading the mapping bound by :func:`bound_env`."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {
            name.lower(): value
            for name, value in _environment.get({}).items()
            if not (self.env_ignore_empty and value == "")
        }

    def prepare_field_value(
        self, field_name: str, field: FieldInfo, value: Any, value_is_complex: bool
    ) -> Any:
        try:
            return super().prepare_field_value(field_name, field, value, value_is_complex)
        except ValueError:
            # Not JSON: validation then names the option and the type it needs, with the other
            # problems, instead of pydantic-settings' SettingsError ending the run.
            return value


@contextlib.contextmanager
def bound_env(env: Mapping[str, str]) -> Iterator[None]:
    token = _environment.set(env)
    try:
        yield
    finally:
        _environment.reset(token)


def decoded(model: type[BaseSettings], init: Mapping[str, Any]) -> dict[str, Any]:
    """Init values (by field name) decoded as the environment's are.

    A typed JSON value of an options file is first written as the environment would hold it (its
    JSON text), so the file, ``--option`` and the environment cannot disagree on a value.
    """
    source = MappingEnvSource(model)
    values = {}
    for name, value in init.items():
        text = value if isinstance(value, str) or value is None else json.dumps(value)
        values[name] = source.prepare_field_value(name, model.model_fields[name], text, False)
    return values


def json_hint(error_type: str) -> str:
    """What to add to pydantic's message when an option needs a JSON list or object."""
    example = _JSON_EXAMPLES.get(error_type)
    return f"; give it as JSON, e.g. {example}" if example else ""


def in_declared_case(annotation: Any, value: Any) -> Any:
    """``value`` in the spelling of the one choice it matches ignoring case, else unchanged."""
    if not isinstance(value, str):
        return value
    choices = _string_choices(annotation)
    if value in choices:
        return value
    matches = [c for c in choices if c.casefold() == value.strip().casefold()]
    return matches[0] if len(matches) == 1 else value


def _string_choices(annotation: Any) -> tuple[str, ...]:
    """The string choices of ``Literal[...]`` or a str-valued ``Enum`` (in ``X | None`` too)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _string_choices(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return tuple(c for arg in typing.get_args(annotation) for c in _string_choices(arg))
    if origin is typing.Literal:
        values: tuple[Any, ...] = typing.get_args(annotation)
    elif isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        values = tuple(member.value for member in annotation)
    else:
        return ()
    return tuple(v for v in values if isinstance(v, str))


def bool_as_number(annotation: Any, value: Any) -> bool:
    """True when ``value`` holds a JSON ``true``/``false`` where ``annotation`` wants a number.

    Pydantic's lax mode reads ``True`` as ``1`` for an ``int`` (``timespan=[true]`` became
    ``[1]``); an option that takes a number must be given a number. A type that accepts a bool
    (``bool``, ``int | bool``, ``Any``, ``str``) is left to validation.
    """
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return bool_as_number(typing.get_args(annotation)[0], value)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        if isinstance(value, bool) and any(a in (bool, str, Any) for a in args):
            return False
        return all(bool_as_number(a, value) for a in args if a is not type(None))
    if isinstance(value, bool):
        return annotation in (int, float)
    if origin in (list, tuple, set, frozenset) and isinstance(value, (list, tuple, set)):
        args = tuple(a for a in typing.get_args(annotation) if a is not Ellipsis)
        return any(
            bool_as_number(args[min(i, len(args) - 1)] if args else Any, v)
            for i, v in enumerate(value)
        )
    if origin is dict and isinstance(value, dict):
        args = typing.get_args(annotation)
        return bool(args) and any(bool_as_number(args[1], v) for v in value.values())
    fields = getattr(annotation, "model_fields", None)
    if isinstance(fields, dict) and isinstance(value, dict):
        return any(
            bool_as_number(field.annotation, value[name])
            for name, field in fields.items()
            if name in value
        )
    return False
