"""What hook-processor installs, and one ``Error:`` line (exit 2) when a dependency is missing."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_harness import HELLO_WORLD, SAMPLE

from hook_processor import _dependencies
from hook_processor.cli import main

REPO_ROOT = Path(__file__).resolve().parent.parent


def block(monkeypatch: pytest.MonkeyPatch, top: str) -> None:
    """Make ``import top`` (and its submodules) fail as if it were not installed."""
    for name in [m for m in sys.modules if m == top or m.startswith(top + ".")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, top, None)


def test_plain_install_brings_every_command_and_the_image_list_is_part_of_it() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert sorted(project["dependencies"]) == sorted(
        [*_dependencies.RUNTIME, *_dependencies.AUTHOR_TOOLS.values()]
    )
    # the old extras stay valid install lines, and add nothing
    assert project["optional-dependencies"]["harness"] == []
    assert project["optional-dependencies"]["docker"] == []
    names = {_dependencies.requirement_name(r) for r in _dependencies.RUNTIME}
    assert names == {"boto3", "click", "obstore", "pydantic", "pydantic-settings", "tqdm"}


def test_the_image_metadata_keeps_only_the_runtime_requirements() -> None:
    metadata = (
        "Metadata-Version: 2.4\n"
        "Name: hook-processor\n"
        "Requires-Dist: boto3>=1.34\n"
        "Requires-Dist: click>=8.1\n"
        "Requires-Dist: docker>=7.0\n"
        "Requires-Dist: jinja2>=3.1\n"
        "Requires-Dist: moto[server]>=5.0\n"
        "Requires-Dist: pydantic-settings>=2.3\n"
        "Requires-Dist: pydantic>=2.6\n"
        "Requires-Dist: pytest>=8; extra == 'dev'\n"
        "Provides-Extra: dev\n"
        "\n"
        "Description with Requires-Dist: moto in it\n"
    )
    assert _dependencies.trim_metadata(metadata) == (
        "Metadata-Version: 2.4\n"
        "Name: hook-processor\n"
        "Requires-Dist: boto3>=1.34\n"
        "Requires-Dist: click>=8.1\n"
        "Requires-Dist: pydantic-settings>=2.3\n"
        "Requires-Dist: pydantic>=2.6\n"
        "Requires-Dist: pytest>=8; extra == 'dev'\n"
        "Provides-Extra: dev\n"
        "\n"
        "Description with Requires-Dist: moto in it\n"
    )


def test_new_without_jinja2_is_one_error_line_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    block(monkeypatch, "jinja2")
    result = CliRunner().invoke(main, ["new", "plain_proc", "--dir", str(tmp_path)])

    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(
        "Error: hook-processor new needs the Python module jinja2, which is not installed here"
    )
    assert "Install it with: pip install 'jinja2>=3.1'" in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_run_without_moto_is_one_error_line_and_leaves_no_output_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    block(monkeypatch, "moto")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["run", str(HELLO_WORLD), "--input", str(SAMPLE), "--output", str(out)]
    )

    assert result.exit_code == 2, result.output
    assert "Error: hook-processor run needs the Python module moto" in result.stderr
    assert "Install it with: pip install 'moto[server]>=5.0'" in result.stderr
    assert "Traceback" not in result.output
    assert not out.exists()


def test_run_keeps_an_output_folder_that_was_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    block(monkeypatch, "moto")
    out = tmp_path / "out"
    out.mkdir()
    result = CliRunner().invoke(
        main, ["run", str(HELLO_WORLD), "--input", str(SAMPLE), "--output", str(out)]
    )

    assert result.exit_code == 2, result.output
    assert out.is_dir()


def test_build_without_the_docker_sdk_names_the_install_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    block(monkeypatch, "docker")
    result = CliRunner().invoke(main, ["build", str(HELLO_WORLD)])

    assert result.exit_code == 2, result.output
    assert "Error: the docker SDK is not installed" in result.stderr
    assert "pip install 'docker>=7.0'" in result.stderr


def test_a_missing_module_of_hook_processor_itself_is_a_bug_with_its_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    block(monkeypatch, "hook_processor.scaffold")
    result = CliRunner().invoke(main, ["new", "plain_proc", "--dir", "x"])

    assert result.exit_code == 1
    assert isinstance(result.exception, ModuleNotFoundError)


def test_each_missing_module_gets_its_install_line() -> None:
    def line(name: str) -> str | None:
        return _dependencies.missing_message("run", ModuleNotFoundError(name=name))

    assert line("werkzeug.serving") == (
        "hook-processor run needs the Python module werkzeug, which is not installed here "
        "(hook-processor was installed without its dependencies?). "
        "Install it with: pip install 'moto[server]>=5.0'"
    )
    assert "pip install the package that provides yaml" in (line("yaml") or "")
    assert line("hook_processor.harness") is None
