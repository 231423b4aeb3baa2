"""Option precedence: one rule for every option and every name of it.

``--option`` over the options file over the environment. Each source is first read on its own:
two names of one option that disagree inside one source (``INPUT_S3_PATH`` and
``SOURCE_S3_PATH`` in the environment, ``s3_prefix`` and ``output_s3_path`` in a file) are an
error naming both, since no order between them is better than the other; a ``null`` value is not
given (it does not erase a lower source's value). ``output_s3_path`` is ``s3_bucket`` and
``s3_prefix`` in one: a source that gives it gives both, so it beats a lower source's
``S3_PREFIX``, and a higher source's ``s3_prefix`` replaces only its prefix. Then each option is
taken from the highest source that gives it, and every value that replaces another source's is
named in a note for the log (names and sources, never values).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from hook_processor.errors import OptionsError


@dataclasses.dataclass
class Layer:
    """One source's options: values and the name each was given under, by field name."""

    source: str
    values: dict[str, Any] = dataclasses.field(default_factory=dict)
    given: dict[str, str] = dataclasses.field(default_factory=dict)

    def add(self, field: str, given: str, value: Any, problems: list[str]) -> None:
        """Record ``given=value``; a second name of ``field`` with another value is a problem."""
        if field in self.values and self.values[field] != value:
            problems.append(
                f"{given}: {self.source} also sets {self.given[field]}, another name of the same "
                "option, to a different value; keep one"
            )
            return
        self.values.setdefault(field, value)
        self.given.setdefault(field, given)


def split_output_path(
    layer: Layer, parse: Callable[..., tuple[str, str]], problems: list[str]
) -> None:
    """Replace the layer's ``output_s3_path`` by the ``s3_bucket`` and ``s3_prefix`` it names."""
    if "output_s3_path" not in layer.values:
        return
    path = layer.values.pop("output_s3_path")
    given = layer.given.pop("output_s3_path")
    try:
        bucket, prefix = parse(str(path), option=given)
    except OptionsError as exc:
        problems.append(f"{exc} (from {layer.source})")
        return
    for field, value, what in (("s3_bucket", bucket, "buckets"), ("s3_prefix", prefix, "prefixes")):
        if field not in layer.values:
            layer.values[field], layer.given[field] = value, given
        elif str(layer.values[field]).strip("/") != value.strip("/"):
            problems.append(
                f"{given} and {layer.given[field]}: {layer.source} gives both, naming different "
                f"{what}; keep one ({given} sets both s3_bucket and s3_prefix)"
            )


def merge(layers: Sequence[Layer]) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """Layers lowest first -> (values, ``"name (from source)"`` of each, override notes)."""
    values: dict[str, Any] = {}
    origin: dict[str, tuple[str, str]] = {}
    notes: list[str] = []
    for layer in layers:
        for field, value in layer.values.items():
            if field in values and values[field] != value:
                lower_source, lower_name = origin[field]
                note = (
                    f"{layer.given[field]} from {layer.source} overrides {lower_name} from "
                    f"{lower_source}"
                )
                if note not in notes:
                    notes.append(note)
            values[field] = value
            origin[field] = (layer.source, layer.given[field])
    shown = {field: f"{name} (from {source})" for field, (source, name) in origin.items()}
    return values, shown, notes


def flatten(
    layers: Sequence[Layer], parse: Callable[..., tuple[str, str]], problems: list[str]
) -> tuple[dict[str, Any], list[str]]:
    """Layers lowest first -> one set of options in which no two names of one option remain.

    For ``hook-processor run``, which hands its options over as environment variables (one
    source): ``output_s3_path`` is kept as given unless another layer also names the output
    location, when every layer's is split into ``s3_bucket`` and ``s3_prefix`` first, so that
    the higher one wins for each. In-source conflicts are reported as by :func:`split_output_path`.
    """
    location = {"output_s3_path", "s3_bucket", "s3_prefix"}
    for layer in layers:
        split_output_path(
            Layer(layer.source, dict(layer.values), dict(layer.given)), parse, problems
        )
    naming = [layer for layer in layers if location & layer.values.keys()]
    if len(naming) > 1 and any("output_s3_path" in layer.values for layer in naming):
        for layer in naming:
            split_output_path(layer, parse, [])
    values, _, notes = merge(layers)
    return values, notes
