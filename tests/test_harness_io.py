"""Inputs of a local run: an empty input is named as such (issue 10, item 13, harness side)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from hook_processor.cli import main
from hook_processor.errors import OptionsError

HELLO_WORLD = Path(__file__).resolve().parent.parent / "examples" / "hello_world"


def run_cli(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, ["run", str(HELLO_WORLD), *args], catch_exceptions=False)


def test_an_empty_input_folder_says_it_is_empty(tmp_path) -> None:
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)  # folders, but not one file
    result = run_cli("--input", str(empty), "--output", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: --input {empty}: the folder holds no files")

    none = run_cli("--output", str(tmp_path / "out"))
    assert none.exit_code == 2
    assert none.stderr.startswith("Error: --input: give the files or folders to process")
    assert not (tmp_path / "out").exists()


def test_run_processor_with_no_inputs_raises_in_its_own_words(tmp_path, run_processor) -> None:
    for empty in ({}, None):
        with pytest.raises(OptionsError) as info:
            run_processor(HELLO_WORLD, inputs=empty)
        message = str(info.value)
        assert message.startswith("run_processor(inputs=...): no input files")
        assert "--input" not in message
        assert isinstance(info.value, ValueError)

    (tmp_path / "nothing").mkdir()
    with pytest.raises(OptionsError) as info:
        run_processor(HELLO_WORLD, inputs=tmp_path / "nothing")
    assert str(info.value).startswith(
        f"run_processor(inputs=...) {tmp_path / 'nothing'}: the folder holds no files"
    )
