"""Find a processor project, import its ``process`` function and check its signature.

A project declares itself in ``pyproject.toml``::

    [tool.hook-processor]
    name = "dedl_hello_world"              # the Hook workflow name
    entrypoint = "hello_world.processor:process"
    version = "1.1.0"
    description = "Upper-cases the text of every input file"
    stac_catalog = true                     # catalog.json of the outputs (default; false: none)

Every way loading can fail has its own message naming the thing and the fix.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
import sys
import tomllib
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hook_processor.errors import OptionsError
from hook_processor.options import Options

WORKFLOW_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")
_ENTRYPOINT = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_KNOWN_KEYS = frozenset(
    {
        "name",
        "entrypoint",
        "version",
        "description",
        "display_name",
        "input_product_type",
        "python_image",
        "stac_catalog",
    }
)
SIGNATURE = "process(input_dir, output_dir[, options][, context])"


@dataclasses.dataclass(frozen=True)
class ProjectConfig:
    """The ``[tool.hook-processor]`` table of a project."""

    root: Path
    name: str
    entrypoint: str
    version: str = "0.0.0"
    description: str = ""
    display_name: str | None = None
    input_product_type: str = "*"
    python_image: str | None = None  # the base image's Python image (build, run --mode container)
    stac_catalog: bool = True  # write catalog.json (STAC) of the outputs after process (ours)


@dataclasses.dataclass(frozen=True)
class Processor:
    """An imported, checked ``process`` function and what it asks for."""

    function: Callable[..., Any]
    options_model: type[Options] | None
    wants_context: bool
    reference: str


def read_project(root: Path) -> ProjectConfig:
    """Read ``root/pyproject.toml``'s ``[tool.hook-processor]`` table."""
    pyproject = root / "pyproject.toml"
    if not root.is_dir():
        raise OptionsError(
            f"project folder {root} does not exist; give the folder of your processor"
        )
    if not pyproject.is_file():
        raise OptionsError(
            f"{root} has no pyproject.toml; run hook-processor in a processor project "
            "(hook-processor new NAME creates one) or set HOOK_ENTRYPOINT=module:function"
        )
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise OptionsError(f"{pyproject}: not valid TOML ({exc})") from None
    table = data.get("tool", {}).get("hook-processor")
    if not isinstance(table, dict):
        raise OptionsError(
            f"{pyproject} has no [tool.hook-processor] table; add one with name and entrypoint, "
            'e.g. name = "dedl_hello_world", entrypoint = "hello_world.processor:process"'
        )
    problems = []
    name = table.get("name")
    if not isinstance(name, str) or not WORKFLOW_NAME.match(name):
        problems.append(
            "name: required, the Hook workflow name: lowercase letters, digits, '_' and '-', "
            "starting with a letter"
        )
    entrypoint = table.get("entrypoint")
    if not isinstance(entrypoint, str):
        problems.append('entrypoint: required, "module:function", e.g. "my_proc.processor:process"')
    version = table.get("version", data.get("project", {}).get("version", "0.0.0"))
    description = table.get("description", data.get("project", {}).get("description", ""))
    python_image = table.get("python_image")
    for key, value in (("version", version), ("description", description)):
        if not isinstance(value, str):
            problems.append(f"{key}: must be a string")
    if python_image is not None and (not isinstance(python_image, str) or not python_image.strip()):
        problems.append('python_image: a docker image name, e.g. "python:3.11-slim"')
    stac_catalog = table.get("stac_catalog", True)
    if not isinstance(stac_catalog, bool):
        problems.append(
            "stac_catalog: true (write catalog.json, the STAC catalog of the outputs) or false"
        )
    unknown = set(table) - _KNOWN_KEYS
    if unknown:
        problems.append(f"unknown keys {sorted(unknown)}; known: {', '.join(sorted(_KNOWN_KEYS))}")
    if problems:
        raise OptionsError(
            f"{pyproject} [tool.hook-processor] is not valid:\n"
            + "\n".join(f"  - {p}" for p in problems)
        )
    assert isinstance(name, str) and isinstance(entrypoint, str)
    return ProjectConfig(
        root=root.resolve(),
        name=name,
        entrypoint=entrypoint,
        version=version,
        description=description,
        display_name=table.get("display_name"),
        input_product_type=table.get("input_product_type", "*"),
        python_image=python_image.strip() if python_image else None,
        stac_catalog=stac_catalog is not False,
    )


def load_processor(reference: str, search_path: Path | None = None) -> Processor:
    """Import ``module:function`` (from ``search_path`` first, if given) and check it."""
    if not _ENTRYPOINT.match(reference):
        raise OptionsError(
            f"entrypoint {reference!r} is not of the form module:function "
            '(e.g. "hello_world.processor:process")'
        )
    module_name, function_name = reference.split(":")
    if search_path is not None:
        for folder in (search_path / "src", search_path):
            if folder.is_dir() and str(folder) not in sys.path:
                sys.path.insert(0, str(folder))
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise OptionsError(
                f"entrypoint {reference}: module {exc.name!r} not found; install the project "
                "(pip install -e .) or run from its folder"
            ) from None
        raise OptionsError(
            f"entrypoint {reference}: importing {module_name} failed: {exc}; install what it needs"
        ) from exc
    except Exception as exc:
        raise OptionsError(
            f"entrypoint {reference}: importing {module_name} raised "
            f"{exc.__class__.__name__}: {exc}"
        ) from exc
    function = getattr(module, function_name, None)
    if function is None:
        raise OptionsError(
            f"entrypoint {reference}: module {module_name!r} has no attribute {function_name!r}"
        )
    if not callable(function) or inspect.isclass(function):
        raise OptionsError(f"entrypoint {reference}: {function_name!r} is not a function")
    return _checked(function, reference)


def _checked(function: Callable[..., Any], reference: str) -> Processor:
    if inspect.iscoroutinefunction(function):
        raise OptionsError(f"{reference}: process must be a plain function, not async def")
    signature = inspect.signature(function)
    params = list(signature.parameters.values())
    problems = []
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) < 2:
        problems.append(f"it takes {len(positional)} positional parameters; expected {SIGNATURE}")
    extra = [p for p in params[2:] if p.name not in ("options", "context")]
    for p in params:
        if p.kind is p.VAR_POSITIONAL:
            problems.append(f"*{p.name} is not supported; expected {SIGNATURE}")
        elif p.kind is p.VAR_KEYWORD:
            problems.append(f"**{p.name} is not supported; expected {SIGNATURE}")
    for p in extra:
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.default is p.empty:
            problems.append(
                f"parameter {p.name!r} is not provided by hook-processor; expected {SIGNATURE}"
            )
    options_model = None
    if "options" in signature.parameters:
        options_model = _options_model(function, reference, problems)
    if problems:
        raise OptionsError(f"{reference} has the wrong signature: " + "; ".join(problems))
    return Processor(function, options_model, "context" in signature.parameters, reference)


def _options_model(
    function: Callable[..., Any], reference: str, problems: list[str]
) -> type[Options] | None:
    try:
        hints = typing.get_type_hints(function)
    except Exception as exc:
        problems.append(f"its annotations cannot be resolved ({exc})")
        return None
    model = hints.get("options")
    if not (inspect.isclass(model) and issubclass(model, Options) and model is not Options):
        problems.append(
            "parameter 'options' must be annotated with your subclass of hook_processor.Options "
            "(e.g. options: MyOptions)"
        )
        return None
    from hook_processor.options import StandardOptions, option_aliases

    standard = {a for n in StandardOptions.model_fields for a in option_aliases(StandardOptions, n)}
    clash = sorted(set(model.model_fields) & standard)
    if clash:
        problems.append(f"{model.__name__} redeclares standard options {clash}; remove them")
    return model
