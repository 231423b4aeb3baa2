"""The checks a developer runs (README, Development) are the ones CI runs, with the same tools."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import tomllib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_lint_format_and_types_before_the_tests() -> None:
    lines = [
        line.strip()
        for line in (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    steps = [
        "python3 -m pip install -e '.[dev]'",
        "python3 -m ruff check .",
        "python3 -m ruff format --check .",
        "python3 -m mypy hook_processor",
        "python3 -m pytest",
    ]
    assert [lines.index(step) for step in steps] == sorted(lines.index(step) for step in steps)


def test_the_dev_extra_pins_the_checkers_that_are_installed() -> None:
    dev = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]["dev"]
    for tool in ("ruff", "mypy"):
        (pin,) = [r for r in dev if r.startswith(tool)]
        assert pin == f"{tool}=={importlib.metadata.version(tool)}"


def test_mypy_finds_no_error_in_the_package() -> None:
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "hook_processor"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.startswith("Success: no issues found")
