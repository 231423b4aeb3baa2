"""Imports flow one way (DESIGN.md): the interface layers on top, the runtime in the middle, S3 and
config at the bottom. ``container`` builds and runs images; the modes layer uses it; nothing in
it points back at the harness, the modes or the service."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "hook_processor"


def imported(path: Path) -> set[str]:
    """Every hook_processor module ``path`` imports, at any depth of the file (lazy ones too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return {n for n in names if n.startswith("hook_processor")}


def modules(pattern: str) -> list[Path]:
    return sorted(PACKAGE.glob(pattern))


# (the modules, the modules they must not import)
RULES = [
    (
        ["container.py", "_image_build.py", "_image_context.py", "_image_labels.py"],
        [
            "hook_processor.harness",
            "hook_processor._modes",
            "hook_processor._container_mode",
            "hook_processor.service",
            "hook_processor.cli",
        ],
    ),
    (
        ["_modes.py", "_container_mode.py", "harness.py", "testing.py"],
        ["hook_processor.service", "hook_processor.cli"],
    ),
    (
        [
            "runtime.py",
            "storage.py",
            "options.py",
            "_s3/*.py",
            "_catalog.py",
            "stac.py",
            "context.py",
        ],
        [
            "hook_processor.harness",
            "hook_processor._modes",
            "hook_processor.container",
            "hook_processor.service",
            "hook_processor.cli",
            "hook_processor.testing",
        ],
    ),
    (["service/*.py"], ["hook_processor.cli", "hook_processor._cli_"]),
    (
        ["export/*.py"],
        [
            "hook_processor.cli",
            "hook_processor._cli_",
            "hook_processor.service",
            "hook_processor.harness",
            "hook_processor._modes",
            "hook_processor.testing",
        ],
    ),
]


@pytest.mark.parametrize(("patterns", "forbidden"), RULES)
def test_imports_flow_one_way(patterns: list[str], forbidden: list[str]) -> None:
    found = [p for pattern in patterns for p in modules(pattern)]
    assert found, patterns
    wrong = {
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in found
        for name in imported(path)
        if any(name == f or name.startswith(f if f.endswith("_") else f + ".") for f in forbidden)
    }
    assert not wrong, sorted(wrong)


def test_the_rule_sees_a_lazy_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "def f():\n    from hook_processor import _modes\n    import hook_processor.cli\n"
    )
    assert {"hook_processor._modes", "hook_processor.cli"} <= imported(module)
