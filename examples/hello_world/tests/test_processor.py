"""dedl_hello_world's tests: the pytest plugin of hook-processor runs the project, no conftest.

Run them from this folder (``pytest``) or from hook-processor's repository: the plugin finds the
project that holds this file.
"""

from __future__ import annotations

from pathlib import Path

SAMPLE = Path(__file__).resolve().parent.parent / "sample" / "input"


def test_sample_is_upper_cased(run_processor) -> None:
    run = run_processor(inputs=SAMPLE)

    assert run.exit_code == 0, run.logs
    assert run.status == "completed"
    expected = (SAMPLE / "example.data").read_text(encoding="utf-8").upper().encode("utf-8")
    assert run.outputs == {"example.data": expected}
    published = sorted(f["key"].split("/", 1)[-1] for f in run.manifest["files"])
    assert published == ["_stac/example.data.json", "catalog.json", "example.data"]
    assert "upper-cased example.data" in run.logs


def test_the_outputs_have_a_valid_stac_catalog(run_processor) -> None:
    run = run_processor(inputs={"a.txt": "a", "deep/b.txt": "b"})

    assert run.exit_code == 0, run.logs
    run.catalog.validate_all()  # STAC 1.1, with the schemas pystac bundles (offline)
    items = {item.id: item for item in run.catalog.get_items(recursive=True)}
    assert sorted(items) == ["a.txt", "deep"]  # one item per top-level file or folder
    assert items["deep"].assets["b.txt"].href == "../deep/b.txt"
    assert items["a.txt"].datetime is not None  # the run's time: the processor gives none


def test_every_file_keeps_its_relative_path(run_processor) -> None:
    run = run_processor(inputs={"a.txt": "grüße\n", "deep/b.txt": b"b"})

    assert run.exit_code == 0, run.logs
    assert run.outputs == {"a.txt": "GRÜSSE\n".encode(), "deep/b.txt": b"B"}


def test_temporary_storage_gives_a_zip_with_the_same_files(run_processor) -> None:
    run = run_processor(inputs={"example.data": b"temporary"}, output_storage="TEMPORARY")

    assert run.exit_code == 0, run.logs
    assert run.result["DownloadLink"]
    assert run.outputs == {"example.data": b"TEMPORARY"}
    assert run.manifest is None
    assert [item.id for item in run.catalog.get_items()] == ["example.data"]  # in the zip


def test_binary_input_fails_with_exit_code_4(run_processor) -> None:
    run = run_processor(inputs={"image.bin": b"\xff\xfe\x00"})

    assert run.exit_code == 4
    assert run.status == "failed"
    assert "UnicodeDecodeError" in run.status_message
    assert run.outputs == {}
