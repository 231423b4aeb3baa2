"""`hook-processor build` and `run --mode container`, for real: images on the session's base image.

The base image is built once per session (the ``base_image`` fixture, ``container.build_base``);
every processor image here is a small layer on top of it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pystac
import pytest
from container_helpers import HELLO, SAMPLE, cli, copy_project

from hook_processor import container, harness

pytestmark = pytest.mark.container


def contents(files: dict[str, Path]) -> dict[str, bytes]:
    return {name: path.read_bytes() for name, path in files.items()}


def without_catalog(files: dict[str, bytes], output_dir: Path) -> dict[str, bytes]:
    """The products alone, once the STAC catalog beside them is checked: valid (pystac's
    bundled schemas), one item per product. Its items carry each run's own time."""
    catalog = {k: files.pop(k) for k in list(files) if k == "catalog.json" or k[:6] == "_stac/"}
    products = {name.split("/")[0] for name in files}
    assert sorted(catalog) == sorted(["catalog.json", *(f"_stac/{p}.json" for p in products)])
    pystac.Catalog.from_file(str(output_dir / "catalog.json")).validate_all()
    return files


@pytest.fixture(scope="module")
def hello_image(base_image: Any, docker_client: Any) -> container.BuildReport:
    return container.build_processor(
        HELLO, base_image=base_image.tag, ca_bundle=base_image.ca_bundle, client=docker_client
    )


def test_hello_world_image_is_lean_and_says_what_it_is(hello_image: container.BuildReport) -> None:
    assert hello_image.tag == "dedl_hello_world:1.1.0"
    assert 0 < hello_image.size_over_base < 20_000_000  # the project only, not a second venv
    labels = hello_image.labels
    assert labels["org.opencontainers.image.title"] == "dedl_hello_world"
    assert labels["org.opencontainers.image.version"] == "1.1.0"
    assert labels["org.opencontainers.image.created"]
    workflow = json.loads(labels[container.LABEL_WORKFLOW])
    assert workflow["Name"] == "dedl_hello_world"
    storage = next(o for o in workflow["WorkflowOptions"] if o["Name"] == "output_storage")
    assert {v["value"] for v in storage["Value"]} == {"PRIVATE", "TEMPORARY"}
    assert [s.name for s in hello_image.stages] == ["processor"]


def test_the_ca_bundle_never_reaches_the_processor_image(
    base_image: Any, hello_image: container.BuildReport, docker_client: Any
) -> None:
    if base_image.ca_marker is None:
        pytest.skip("no CA bundle on this machine (PIP_CERT, REQUESTS_CA_BUNDLE, SSL_CERT_FILE)")
    marker = base_image.ca_marker.encode()
    tail = b""
    for chunk in docker_client.images.get(hello_image.image_id).save(named=False):
        window = tail + chunk
        assert marker not in window, "the CA bundle is inside a layer of the processor image"
        tail = window[-len(marker) :]


def test_inprocess_subprocess_and_container_runs_agree(
    hello_image: container.BuildReport, base_image: Any, tmp_path: Path
) -> None:
    outcomes = {
        mode: harness.run(
            harness.RunRequest(
                output_dir=tmp_path / mode,
                project_dir=HELLO,
                inputs=[SAMPLE],
                mode=mode,
                mode_options={"base_image": base_image.tag} if mode == "container" else {},
            )
        )
        for mode in ("inprocess", "subprocess", "container")
    }
    expected = outcomes["inprocess"]
    assert expected.exit_code == 0 and expected.status == "completed", expected.logs
    assert contents(expected.files)["example.data"].isupper()
    for mode, outcome in outcomes.items():
        assert (outcome.exit_code, outcome.status) == (0, "completed"), (mode, outcome.logs)
        published = without_catalog(contents(outcome.files), tmp_path / mode)
        assert published == without_catalog(contents(expected.files), tmp_path / "inprocess"), mode
        assert outcome.published and outcome.manifest is not None, mode
    assert "result written to /hook-result/result.json" in outcomes["container"].logs


def test_cli_build_then_run_in_the_container(
    hello_image: container.BuildReport, python_image: str, tmp_path: Path
) -> None:
    # No --base-image: the base image for --python-image is found up to date (the session's).
    built = cli("build", str(HELLO), "--python-image", python_image)
    assert built.returncode == 0, built.stderr
    for field in ("image ", "tag ", "size ", "over base ", "stages "):
        assert f"  {field}" in built.stdout, built.stdout
    assert "dedl_hello_world:1.1.0" in built.stdout
    assert "base " in built.stdout and "processor " in built.stdout

    ran = cli(
        "run",
        str(HELLO),
        "--input",
        str(SAMPLE),
        "--output",
        str(tmp_path / "out"),
        "--mode",
        "container",
    )
    assert ran.returncode == 0, ran.stderr
    assert "up to date" in ran.stderr  # built just now: not rebuilt
    assert (tmp_path / "out" / "example.data").read_bytes() == (
        SAMPLE / "example.data"
    ).read_bytes().upper()


def test_new_build_run_matches_the_inprocess_run(base_image: Any, tmp_path: Path) -> None:
    made = cli("new", "hp_container_probe", "--dir", str(tmp_path))
    assert made.returncode == 0, made.stderr
    project = tmp_path / "hp_container_probe"
    built = cli("build", str(project), "--base-image", base_image.tag)
    assert built.returncode == 0, built.stderr
    sample = project / "sample" / "input"
    runs = {}
    for mode in ("inprocess", "container"):
        ran = cli(
            "run",
            str(project),
            "--input",
            str(sample),
            "--output",
            str(tmp_path / mode),
            "--mode",
            mode,
            "--json",
        )
        assert ran.returncode == 0, (mode, ran.stderr)
        assert json.loads(ran.stdout)["Status"] == "completed"
        runs[mode] = {
            p.relative_to(tmp_path / mode).as_posix(): p.read_bytes()
            for p in (tmp_path / mode).rglob("*")
            if p.is_file() and not p.name.startswith((".hook-processor", "_manifest"))
        }
    products = {m: without_catalog(files, tmp_path / m) for m, files in runs.items()}
    assert products["container"] == products["inprocess"] and products["inprocess"]


RAISES = """from pathlib import Path


def process(input_dir: Path, output_dir: Path) -> None:
    (output_dir / "partial.txt").write_text("written before the failure")
    raise RuntimeError("the instrument file is corrupt")
"""


def test_a_processor_that_raises_exits_4_with_a_failed_result(
    base_image: Any, tmp_path: Path
) -> None:
    project = copy_project(tmp_path, "hp_raises_probe", RAISES)
    built = cli("build", str(project), "--base-image", base_image.tag)
    assert built.returncode == 0, built.stderr
    ran = cli(
        "run",
        str(project),
        "--input",
        str(SAMPLE),
        "--output",
        str(tmp_path / "out"),
        "--mode",
        "container",
        "--json",
    )
    assert ran.returncode == 4, ran.stderr
    result = json.loads(ran.stdout)
    assert result["Status"] == "failed"
    assert "the instrument file is corrupt" in result["StatusMessage"]
    assert "RuntimeError" in ran.stderr
    # Not published, but what process() wrote is kept, copied out of the container.
    assert (tmp_path / "out" / "partial.txt").read_text() == "written before the failure"


def test_a_failing_build_step_names_the_step(base_image: Any, tmp_path: Path) -> None:
    project = copy_project(tmp_path, "hp_broken_probe")
    (project / "Dockerfile").write_text(
        "ARG BASE_IMAGE=hook-processor-base:0.1.0\nFROM ${BASE_IMAGE}\n"
        "RUN echo checking the toolchain && false\n",
        encoding="utf-8",
    )
    built = cli("build", str(project), "--base-image", base_image.tag)
    assert built.returncode == 2
    error = built.stderr[built.stderr.index("Error: ") :]
    assert "RUN echo checking the toolchain && false" in error
    assert "returned a non-zero code: 1" in error
    assert "checking the toolchain" in error.split("last lines", 1)[1]  # the step's output tail
    assert "Traceback" not in built.stderr


def test_a_missing_project_is_one_clear_message(tmp_path: Path) -> None:
    built = cli("build", str(tmp_path / "nowhere"))
    assert built.returncode == 2
    assert built.stderr.startswith("Error: project folder ") and "does not exist" in built.stderr
    assert "Traceback" not in built.stderr


def test_no_engine_is_one_clear_message(tmp_path: Path) -> None:
    closed = tmp_path / "closed.sock"  # nothing listens there
    built = cli("build", str(HELLO), env={"DOCKER_HOST": f"unix://{closed}"})
    assert built.returncode == 2
    assert built.stderr.count("Error: ") == 1 and "Traceback" not in built.stderr
    assert "no Docker engine answers at unix://" in built.stderr
    assert "DOCKER_HOST" in built.stderr and "start" in built.stderr.lower()


def test_run_a_given_image_as_it_is(hello_image: container.BuildReport, tmp_path: Path) -> None:
    ran = cli(
        "run",
        str(HELLO),
        "--input",
        str(SAMPLE),
        "--output",
        str(tmp_path / "out"),
        "--mode",
        "container",
        "--image",
        hello_image.tag,
        "--output-storage",
        "TEMPORARY",
    )
    assert ran.returncode == 0, ran.stderr
    assert "mode     container" in ran.stdout
    assert (tmp_path / "out" / "example.data").read_bytes() == (
        SAMPLE / "example.data"
    ).read_bytes().upper()


def test_image_flags_need_the_container_mode(tmp_path: Path) -> None:
    ran = cli(
        "run",
        str(HELLO),
        "--input",
        str(SAMPLE),
        "--output",
        str(tmp_path / "o"),
        "--python-image",
        "somewhere/python:3.11",
    )
    assert ran.returncode == 2
    assert "Error: --image and --python-image go with --mode container" in ran.stderr
    assert not (tmp_path / "o").exists()
