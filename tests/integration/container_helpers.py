"""What the container tests share: hello_world and its sample, a renamed copy, the CLI as a child.

Each copy gets its own workflow name, so its own image tag: the tests share one long-lived engine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
HELLO = REPO_ROOT / "examples" / "hello_world"
SAMPLE = HELLO / "sample" / "input"
CLI = [sys.executable, "-m", "hook_processor"]


def cli(
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    unset: Iterable[str] = (),
) -> subprocess.CompletedProcess[str]:
    """``hook-processor ARGS`` in a child process: this environment without ``unset``, + ``env``."""
    dropped = set(unset)
    environ = {k: v for k, v in os.environ.items() if k not in dropped}
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=cwd,
        env={**environ, **(env or {})},
    )


def copy_project(parent: Path, name: str, processor: str | None = None) -> Path:
    """hello_world as workflow ``name`` (its own image tag), optionally with another process()."""
    project = parent / name
    shutil.copytree(HELLO, project, ignore=shutil.ignore_patterns("__pycache__", ".benchmarks"))
    pyproject = project / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text(encoding="utf-8").replace(
            'name = "dedl_hello_world"', f'name = "{name}"'
        ),
        encoding="utf-8",
    )
    if processor is not None:
        (project / "dedl_hello_world" / "processor.py").write_text(processor, encoding="utf-8")
    return project
