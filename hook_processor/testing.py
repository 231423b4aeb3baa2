"""pytest plugin for processor projects (registered through the ``pytest11`` entry point).

A processor project needs no conftest::

    def test_upper_cases(run_processor):
        run = run_processor(inputs={"example.data": b"hello"})
        assert run.exit_code == 0, run.logs
        assert run.outputs == {"example.data": b"HELLO"}

Fixtures:

* ``hook_s3_server`` (session): an embedded S3 server (moto, real HTTP on 127.0.0.1) as an
  :class:`~hook_processor.s3server.S3Server` (``endpoint_url``, ``access_key``, ``secret_key``,
  ``client()``).
* ``run_processor``: runs a project (or a bare ``process`` function) through the local harness
  against that server, exactly as ``hook-processor run`` does, and returns a :class:`ProcessorRun`.
  An option name the processor does not know (``options={"text_cas": ...}``) is named in the
  run's log and raised as an :class:`UnknownOptionWarning` (pytest lists it under warnings, or
  fails the test with ``-W error``).

pytest loads this module in every session where hook-processor is installed: it imports nothing
heavy at module level (the harness and moto are imported inside the fixtures).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import sys
import types
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pytest

if TYPE_CHECKING:
    from hook_processor.s3server import S3Server

__all__ = [
    "ProcessorRun",
    "RunProcessor",
    "UnknownOptionWarning",
    "hook_s3_server",
    "run_processor",
]

_FUNCTIONS_MODULE = "_hook_processor_test_functions"


class UnknownOptionWarning(UserWarning):
    """An option name of the run that is neither a standard option nor one the processor declares
    (the run ignored it)."""


@dataclasses.dataclass(frozen=True)
class ProcessorRun:
    """One run: what the service would report, and the outputs as bytes."""

    exit_code: int
    status: str
    """``completed``, ``failed`` or ``cancelled`` (the result's Status)."""
    result: dict[str, Any]
    """The result JSON the runtime wrote (Status, StatusMessage, Products, Timings, ...)."""
    outputs: dict[str, bytes]
    """{relative posix path: content} of the published outputs (manifest, zip and the STAC
    catalog excluded: ``catalog.json`` and ``_stac/``, see ``catalog``); when nothing was
    published (a failed run), what process() wrote."""
    manifest: dict[str, Any] | None
    """The PRIVATE manifest (keys, sizes, checksums), or None (TEMPORARY, failed run)."""
    logs: str
    output_dir: Path
    published: bool
    replaced_options: tuple[str, ...] = ()
    unknown_options: tuple[str, ...] = ()
    """One line per unknown option name, with the nearest known name (also in ``logs``)."""
    catalog_files: dict[str, bytes] = dataclasses.field(default_factory=dict)
    """{relative posix path: content} of the published STAC catalog (``catalog.json`` and the
    item files under ``_stac/``)."""

    @property
    def status_message(self) -> str:
        return str(self.result.get("StatusMessage", ""))

    @property
    def catalog(self) -> Any:
        """The published ``catalog.json`` as a ``pystac.Catalog`` (read from ``output_dir``), or
        None when the run published none. ``run.catalog.validate_all()`` validates it offline
        against pystac's bundled STAC 1.1 schemas."""
        if "catalog.json" not in self.catalog_files:
            return None
        import pystac

        return pystac.Catalog.from_file(str(self.output_dir / "catalog.json"))


class RunProcessor(Protocol):
    """The ``run_processor`` fixture, for type checkers: ``def test_x(run_processor:
    RunProcessor) -> None``."""

    def __call__(
        self,
        project: str | Path | Callable[..., Any] | None = None,
        inputs: Mapping[str, bytes | str] | str | Path | list[Path] | None = None,
        options: Mapping[str, Any] | None = None,
        output_storage: str = "PRIVATE",
        mode: str = "inprocess",
        options_file: str | Path | None = None,
    ) -> ProcessorRun: ...


@pytest.fixture(scope="session")
def hook_s3_server() -> Iterator[S3Server]:
    """An embedded S3 server for the whole session (moto's server mode on 127.0.0.1)."""
    from hook_processor.s3server import EmbeddedS3

    with EmbeddedS3() as server:
        yield server


@pytest.fixture
def run_processor(
    hook_s3_server: S3Server,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> RunProcessor:
    """``run_processor(project=None, inputs=..., options=None, output_storage="PRIVATE",
    mode="inprocess", options_file=None) -> ProcessorRun``.

    * ``project``: the project folder, or a ``process`` function. Default: the processor project
      that holds the test file (nearest pyproject.toml with ``[tool.hook-processor]``), else the
      current folder. A function runs as ``HOOK_ENTRYPOINT=module:name``: any function in
      ``inprocess`` mode; a module-level function of an importable module in ``subprocess`` mode.
    * ``inputs``: ``{relative path: bytes or str}``, a file or folder path, or a list of paths.
    * ``options``: ``{name: value}`` like ``--option`` (HOOK_* names are platform settings).
    * ``options_file``: an order body (its S3 endpoints, buckets and keys are replaced).
    """
    test_file = Path(str(request.node.path))

    def run(
        project: str | Path | Callable[..., Any] | None = None,
        inputs: Mapping[str, bytes | str] | str | Path | list[Path] | None = None,
        options: Mapping[str, Any] | None = None,
        output_storage: str = "PRIVATE",
        mode: str = "inprocess",
        options_file: str | Path | None = None,
    ) -> ProcessorRun:
        from hook_processor import harness

        entrypoint = None
        if callable(project):
            entrypoint, project_dir = _function_entrypoint(project, mode)
        elif project is None:
            project_dir = _enclosing_project(test_file) or Path.cwd()
        else:
            project_dir = Path(project)
        if inputs is None:
            inputs = {}
        if isinstance(inputs, str | Path):
            inputs = [Path(inputs)]
        outcome = harness.run(
            harness.RunRequest(
                output_dir=tmp_path_factory.mktemp("hook-output"),
                project_dir=project_dir,
                inputs=_inputs(inputs),
                options={
                    k: v if isinstance(v, str) else json.dumps(v)
                    for k, v in (options or {}).items()
                },
                options_file=Path(options_file) if options_file else None,
                output_storage=output_storage,
                mode=mode,
                server=hook_s3_server,
                entrypoint=entrypoint,
                inputs_label="run_processor(inputs=...)",
                options_label="run_processor(options=...)",
                log_stream=sys.stderr,  # pytest captures it and shows it when the test fails
            )
        )
        manifest = json.loads(outcome.manifest.read_bytes()) if outcome.manifest else None
        unknown = tuple(_unknown_lines(outcome.result))
        for line in unknown:
            warnings.warn(UnknownOptionWarning(line), stacklevel=2)
        files = {name: path.read_bytes() for name, path in outcome.files.items()}
        stac = {name: files.pop(name) for name in list(files) if _is_catalog_file(name)}
        return ProcessorRun(
            exit_code=outcome.exit_code,
            status=outcome.status,
            result=outcome.result,
            outputs=files,
            catalog_files=stac,
            manifest=manifest,
            logs=outcome.logs,
            output_dir=outcome.output_dir,
            published=outcome.published,
            replaced_options=outcome.replaced_options,
            unknown_options=unknown,
        )

    return run


def _is_catalog_file(name: str) -> bool:
    from hook_processor.stac import CATALOG_NAME, ITEMS_FOLDER

    return name == CATALOG_NAME or name.startswith(ITEMS_FOLDER + "/")


def _unknown_lines(result: Mapping[str, Any]) -> list[str]:
    return [
        str(u["Message"])
        for u in result.get("UnknownOptions") or []
        if isinstance(u, dict) and u.get("Message")
    ]


def _inputs(inputs: Mapping[str, bytes | str] | list[Path]) -> list[Path] | dict[str, bytes]:
    if isinstance(inputs, Mapping):
        return {k: v.encode("utf-8") if isinstance(v, str) else v for k, v in inputs.items()}
    return [Path(p) for p in inputs]


def _enclosing_project(start: Path) -> Path | None:
    import tomllib

    for folder in start.parents:
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file():
            try:
                data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if "hook-processor" in data.get("tool", {}):
                return folder
    return None


def _function_entrypoint(function: Callable[..., Any], mode: str) -> tuple[str, Path]:
    """``module:name`` for ``function`` and the folder its module is imported from."""
    module_name = getattr(function, "__module__", None) or ""
    name = getattr(function, "__qualname__", "")
    module = sys.modules.get(module_name)
    importable = (
        module is not None and name.isidentifier() and getattr(module, name, None) is function
    )
    if importable:
        assert module is not None
        file = getattr(module, "__file__", None)
        if file:
            root = Path(file).resolve().parent
            for _ in range(module_name.count(".")):
                root = root.parent
            return f"{module_name}:{name}", root
        return f"{module_name}:{name}", Path.cwd()
    if mode != "inprocess":
        raise ValueError(
            f"run_processor: {name or function!r} is not a module-level function of an importable "
            f"module, so mode={mode!r} cannot import it in another process; define it at module "
            "level or use mode='inprocess'"
        )
    # In-process, any callable works: register it under a module of its own.
    registry = sys.modules.get(_FUNCTIONS_MODULE)
    if registry is None:
        registry = sys.modules[_FUNCTIONS_MODULE] = types.ModuleType(_FUNCTIONS_MODULE)
    attribute = f"process_{uuid.uuid4().hex[:12]}"
    setattr(registry, attribute, function)
    file = inspect.getsourcefile(function) if inspect.isfunction(function) else None
    return f"{_FUNCTIONS_MODULE}:{attribute}", Path(file).parent if file else Path.cwd()
