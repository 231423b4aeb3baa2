"""In-process runs are isolated (issue 10, item 10): each imports its own project's code.

Two projects whose modules share a name (``processor:process``, or a package ``shared_pkg``) run
one after the other in this one process: each runs its own code; ``sys.path`` is as before and
the project's modules are gone from ``sys.modules`` after each run.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from hook_processor import harness

PROCESS = """
WHO = {who!r}


def process(input_dir, output_dir):
    (output_dir / "who.txt").write_text(WHO)
"""

LAYOUTS = {
    "module": ("processor.py", "processor:process"),
    "src package": ("src/shared_pkg/processor.py", "shared_pkg.processor:process"),
}


def make_project(root: Path, who: str, layout: str) -> Path:
    path, entrypoint = LAYOUTS[layout]
    folder = root / who
    module = folder / path
    module.parent.mkdir(parents=True)
    if module.parent.name == "shared_pkg":
        (module.parent / "__init__.py").write_text("")
    module.write_text(PROCESS.format(who=who))
    (folder / "pyproject.toml").write_text(
        f'[tool.hook-processor]\nname = "{who.lower()}"\nentrypoint = "{entrypoint}"\n'
    )
    return folder


def project_modules() -> list[str]:
    return sorted(
        name for name in sys.modules if name == "processor" or name.split(".")[0] == "shared_pkg"
    )


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_plugin_runs_two_same_named_projects_each_with_its_own_code(
    tmp_path, run_processor, layout: str
) -> None:
    path_before = list(sys.path)
    assert project_modules() == []
    for who in ("first", "second", "first"):
        project = tmp_path / who
        if not project.exists():
            make_project(tmp_path, who, layout)
        run = run_processor(project=project, inputs={"x.txt": b"x"})
        assert run.exit_code == 0, run.logs
        assert run.outputs["who.txt"] == who.encode()
        assert sys.path == path_before
        assert project_modules() == []


@pytest.mark.parametrize("mode", ["inprocess", "subprocess"])
def test_harness_library_runs_are_isolated_too(tmp_path, mode: str) -> None:
    path_before = list(sys.path)
    for who in ("alpha", "beta"):
        outcome = harness.run(
            harness.RunRequest(
                output_dir=tmp_path / f"out-{who}",
                project_dir=make_project(tmp_path, who, "module"),
                inputs={"x.txt": b"x"},
                mode=mode,
            )
        )
        assert outcome.exit_code == 0, outcome.logs
        assert outcome.files["who.txt"].read_text() == who
        assert sys.path == path_before
        assert project_modules() == []


def test_a_module_the_caller_imported_is_neither_used_nor_lost(tmp_path, run_processor) -> None:
    """The test itself imported one project's ``processor``: another project's run does not
    get it, and the caller finds its own module in place afterwards."""
    mine = make_project(tmp_path, "mine", "module")
    sys.path.insert(0, str(mine))
    try:
        own = importlib.import_module("processor")
    finally:
        sys.path.remove(str(mine))
    try:
        run = run_processor(project=make_project(tmp_path, "other", "module"), inputs={"x": b"x"})
        assert run.outputs["who.txt"] == b"other"
        assert sys.modules["processor"] is own
        assert own.WHO == "mine"
    finally:
        sys.modules.pop("processor", None)
