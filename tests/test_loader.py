"""Loading a processor project: each failure has its own precise message."""

from __future__ import annotations

import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from hook_processor.errors import OptionsError
from hook_processor.loader import load_processor, read_project

HELLO_WORLD = Path(__file__).resolve().parent.parent / "examples" / "hello_world"


def make_project(tmp_path: Path, code: str, table: str | None = None) -> tuple[Path, str]:
    """A project with a uniquely named module (modules stay cached in sys.modules)."""
    module = f"proc_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(code))
    if table is None:
        table = f'name = "my_proc"\nentrypoint = "{module}:process"\nversion = "2.0.0"'
    (tmp_path / "pyproject.toml").write_text(f"[tool.hook-processor]\n{table}\n")
    return tmp_path, module


@pytest.fixture(autouse=True)
def _restore_sys_path():
    saved = list(sys.path)
    yield
    sys.path[:] = saved


def test_hello_world_project() -> None:
    project = read_project(HELLO_WORLD)
    assert (project.name, project.version, project.display_name) == (
        "dedl_hello_world",
        "1.1.0",
        "DEDL Hello World",
    )
    processor = load_processor(project.entrypoint, search_path=HELLO_WORLD)
    assert processor.wants_context and processor.options_model is None


def test_options_model_is_found(tmp_path: Path) -> None:
    root, module = make_project(
        tmp_path,
        """
        from pathlib import Path
        from hook_processor import Options

        class MyOptions(Options):
            factor: int = 2

        def process(input_dir: Path, output_dir: Path, options: MyOptions) -> None:
            pass
    """,
    )
    processor = load_processor(f"{module}:process", search_path=root)
    assert processor.options_model.__name__ == "MyOptions"
    assert not processor.wants_context


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("def process(input_dir):\n    pass\n", "takes 1 positional parameters"),
        ("def process(a, b, *rest):\n    pass\n", "*rest is not supported"),
        (
            "def process(a, b, colour):\n    pass\n",
            "parameter 'colour' is not provided by hook-processor",
        ),
        ("async def process(a, b):\n    pass\n", "not async def"),
        (
            "def process(a, b, options):\n    pass\n",
            "must be annotated with your subclass of hook_processor.Options",
        ),
        ("process = 3\n", "'process' is not a function"),
        ("raise RuntimeError('boom at import')\n", "raised RuntimeError: boom at import"),
        ("import not_a_real_dependency_xyz\n", "importing proc_"),
        ("def other(a, b):\n    pass\n", "has no attribute 'process'"),
    ],
)
def test_bad_processors(tmp_path: Path, code: str, message: str) -> None:
    root, module = make_project(tmp_path, code)
    with pytest.raises(OptionsError, match=message.replace("*", r"\*")):
        load_processor(f"{module}:process", search_path=root)


def test_missing_module(tmp_path: Path) -> None:
    with pytest.raises(
        OptionsError, match="module 'no_such_module_abc' not found; install the project"
    ):
        load_processor("no_such_module_abc:process", search_path=tmp_path)


def test_bad_reference() -> None:
    with pytest.raises(OptionsError, match="not of the form module:function"):
        load_processor("just_a_module")


def test_project_errors(tmp_path: Path) -> None:
    with pytest.raises(OptionsError, match="does not exist"):
        read_project(tmp_path / "missing")
    with pytest.raises(OptionsError, match="has no pyproject.toml"):
        read_project(tmp_path)
    (tmp_path / "pyproject.toml").write_text("[project]\nname='x'\n")
    with pytest.raises(OptionsError, match=r"no \[tool.hook-processor\] table"):
        read_project(tmp_path)
    (tmp_path / "pyproject.toml").write_text(
        '[tool.hook-processor]\nname = "Bad Name"\ncolour = 1\n'
    )
    with pytest.raises(OptionsError) as caught:
        read_project(tmp_path)
    text = str(caught.value)
    assert "name: required, the Hook workflow name" in text
    assert "entrypoint: required" in text
    assert "unknown keys ['colour']" in text
