"""``hook-processor new``: render ``templates/project`` into a new processor project.

The template tree lives in ``templates/project`` at the top of the repository and ships inside the
wheel as ``hook_processor/_templates/project``. Path segments and files ending in ``.jinja`` are
Jinja2 templates (``StrictUndefined``: a missing variable is an error, never an empty string);
``.jinja`` is dropped from the name. Other files are copied byte for byte.

Nothing is left half-done: every file is rendered in memory first, so a template error writes
nothing; a failure while writing deletes the files and folders this run created and puts back
the files it overwrote (``--force``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import keyword
import sys
from pathlib import Path
from typing import Any

from hook_processor import __version__
from hook_processor.errors import OptionsError
from hook_processor.loader import WORKFLOW_NAME

TEMPLATE = "project"
_SUFFIX = ".jinja"

# Top-level modules a processor package must not shadow: hook-processor, what it imports, the
# test tools, and the project's own tests folder.
_TAKEN = frozenset(
    {
        "hook_processor",
        "boto3",
        "botocore",
        "click",
        "pydantic",
        "pydantic_core",
        "pydantic_settings",
        "moto",
        "jinja2",
        "docker",
        "pytest",
        "tests",
        "test",
    }
)


@dataclasses.dataclass(frozen=True)
class ProjectNames:
    """The names of a new project, all derived from the workflow NAME."""

    name: str  # the Hook workflow name: my_ndvi or my-ndvi
    package: str  # the Python package: my_ndvi
    distribution: str  # the pip distribution: my-ndvi
    display_name: str  # My Ndvi


def project_names(name: str) -> ProjectNames:
    """Check NAME and derive the package and distribution names; OptionsError says what is wrong."""
    if not WORKFLOW_NAME.match(name):
        raise OptionsError(
            f"NAME {name!r} is not a valid Hook workflow name: use lowercase letters, digits, "
            "'_' and '-', starting with a letter (e.g. my_ndvi or my-ndvi)"
        )
    package = name.replace("-", "_")
    if keyword.iskeyword(package):
        raise OptionsError(
            f"NAME {name!r} gives the Python package {package!r}, a Python keyword; "
            f"choose another name (e.g. {package}_processor)"
        )
    if package in sys.stdlib_module_names or package in _TAKEN:
        raise OptionsError(
            f"NAME {name!r} gives the Python package {package!r}, which would shadow the module "
            f"of the same name that the processor needs; choose another name (e.g. "
            f"{package}_processor)"
        )
    words = [w for w in package.split("_") if w]
    return ProjectNames(
        name=name,
        package=package,
        distribution=name.replace("_", "-"),
        display_name=" ".join(w.capitalize() for w in words),
    )


def templates_root() -> Path:
    """The scaffold templates: the wheel's package data, else the checkout's ``templates/``."""
    installed = Path(__file__).resolve().parent / "_templates"
    if (installed / TEMPLATE).is_dir():
        return installed
    checkout = Path(__file__).resolve().parent.parent / "templates"
    if (checkout / TEMPLATE).is_dir():
        return checkout
    raise FileNotFoundError(
        f"the scaffold templates are missing: neither {installed} nor {checkout} holds "
        f"{TEMPLATE}/ (a broken hook-processor installation: reinstall it)"
    )


def render(
    names: ProjectNames, description: str, template: Path | None = None
) -> dict[Path, bytes]:
    """Render the project template in memory: {relative path: content}."""
    import jinja2

    root = template or templates_root() / TEMPLATE
    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["toml"] = _toml_string
    variables: dict[str, Any] = {
        **dataclasses.asdict(names),
        "description": description,
        "version": "0.1.0",
        "hook_processor_version": __version__,
    }
    files: dict[Path, bytes] = {}
    for source in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = source.relative_to(root)
        if "__pycache__" in relative.parts:
            continue
        parts = [env.from_string(part).render(variables) for part in relative.parts]
        if parts[-1].endswith(_SUFFIX):
            parts[-1] = parts[-1][: -len(_SUFFIX)]
            text = env.from_string(source.read_text(encoding="utf-8")).render(variables)
            content = text.encode("utf-8")
        else:
            content = source.read_bytes()
        files[Path(*parts)] = content
    return files


def new(
    name: str,
    parent: Path,
    description: str | None = None,
    force: bool = False,
    template: Path | None = None,
) -> Path:
    """Create the processor project ``parent/name``; returns its folder.

    Refuses a bad NAME, a description on several lines, and an existing non-empty folder unless
    ``force`` (then files of the template overwrite files of the same name; others are kept).
    """
    names = project_names(name)
    description = names.display_name + " processor" if description is None else description
    if "\n" in description or "\r" in description or not description.strip():
        raise OptionsError("--description must be one non-empty line of text")
    target = parent / name
    if target.exists() and not target.is_dir():
        raise OptionsError(f"{target} exists and is not a folder; choose another NAME or --dir")
    if target.is_dir() and any(target.iterdir()) and not force:
        raise OptionsError(
            f"{target} already exists and is not empty; choose another NAME or --dir, or pass "
            "--force to write the project into it (files of the same name are overwritten)"
        )
    files = render(names, description.strip(), template)
    _write(target, files)
    return target


def _write(target: Path, files: dict[Path, bytes]) -> None:
    """Write every file, or (on any failure) undo what was done and re-raise."""
    created: list[Path] = []  # files and folders this call created, in creation order
    replaced: dict[Path, bytes] = {}  # files overwritten, with their previous content
    try:
        _mkdir(target, created)
        for relative, content in files.items():
            path = target / relative
            _mkdir(path.parent, created)
            if path.is_file():
                replaced[path] = path.read_bytes()
            elif not path.exists() and not path.is_symlink():
                created.append(path)
            path.write_bytes(content)
    except BaseException as exc:
        _undo(created, replaced)
        if isinstance(exc, OSError):
            raise OptionsError(
                f"cannot write the project into {target}: {exc.strerror or exc} "
                f"({exc.filename or target}); nothing was left behind"
            ) from exc
        raise


def _mkdir(folder: Path, created: list[Path]) -> None:
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        path.mkdir()
        created.append(path)


def _undo(created: list[Path], replaced: dict[Path, bytes]) -> None:
    for path, content in replaced.items():
        with contextlib.suppress(OSError):
            path.write_bytes(content)
    for path in reversed(created):
        try:
            if path.is_dir() and not path.is_symlink():
                path.rmdir()
            else:
                path.unlink(missing_ok=True)
        except OSError:
            pass


def _toml_string(value: str) -> str:
    """A TOML basic string (JSON's escapes are valid TOML ones)."""
    return json.dumps(value, ensure_ascii=False)
