"""The public names of ``hook_processor``: real to type checkers, cheap to import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

import hook_processor
from hook_processor import errors
from hook_processor.cli import main


def test_the_public_names_resolve_and_are_sorted() -> None:
    assert hook_processor.__all__ == sorted(hook_processor.__all__)
    for name in hook_processor.__all__:
        assert getattr(hook_processor, name) is not None, name
    from hook_processor.context import Context
    from hook_processor.options import Options

    assert (hook_processor.Context, hook_processor.Options) == (Context, Options)
    # the errors an author may catch, from the package itself
    for name in ("HookProcessorError", "UserError", "OptionsError", "ProcessError"):
        assert getattr(hook_processor, name) is getattr(errors, name)
    assert issubclass(hook_processor.OptionsError, hook_processor.HookProcessorError)


def test_importing_the_package_stays_cheap() -> None:
    probe = (
        "import json, sys, hook_processor; "
        "print(json.dumps(sorted(m for m in ('pydantic', 'boto3', 'click') if m in sys.modules)))"
    )
    child = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(child.stdout) == []


def test_a_new_project_passes_mypy_strict(tmp_path: Path) -> None:
    created = CliRunner().invoke(main, ["new", "typed_proc", "--dir", str(tmp_path)])
    assert created.exit_code == 0, created.output
    project = tmp_path / "typed_proc"

    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "cache"), "."],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=600,
    )

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.startswith("Success: no issues found in 3 source files")
