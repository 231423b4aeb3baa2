"""The images carry what `hook-processor exec` needs, not the author's tools (moto, docker, jinja2),
although a plain `pip install hook-processor` brings those."""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path
from typing import Any

import pytest

from hook_processor import container, scaffold

pytestmark = pytest.mark.container

AUTHOR_TOOLS = ("moto", "docker", "jinja2", "werkzeug", "flask")
PROBE = f"import importlib.util as u; print([m for m in {AUTHOR_TOOLS} if u.find_spec(m)])"


def test_the_base_image_has_no_author_tools_and_consistent_metadata(
    base_image: Any, run_in_container: Any
) -> None:
    ran = run_in_container(base_image.tag, ["-c", PROBE], entrypoint=["python"])
    assert (ran.exit_code, ran.stdout.strip()) == (0, "[]"), ran.output

    ran = run_in_container(base_image.tag, ["-m", "pip", "check"], entrypoint=["python"])
    assert ran.exit_code == 0 and "No broken requirements" in ran.stdout, ran.output


def test_an_author_command_in_the_image_says_what_to_install(
    base_image: Any, run_in_container: Any
) -> None:
    ran = run_in_container(
        base_image.tag, ["new", "x", "--dir", "/tmp"], entrypoint=["hook-processor"]
    )
    assert ran.exit_code == 2, ran.output
    assert ran.stderr.startswith("Error: hook-processor new needs the Python module jinja2")
    assert "Traceback" not in ran.output


def test_a_new_projects_image_pulls_no_author_tools(
    base_image: Any, docker_client: Any, run_in_container: Any, tmp_path: Path
) -> None:
    # The template's project depends on hook-processor: its pip install in the processor
    # Dockerfile must not resolve moto, docker and jinja2 on top of the base image.
    project = scaffold.new("deps_probe", tmp_path)
    tag = f"hook-deps-probe:{uuid.uuid4().hex[:8]}"
    report = container.build_processor(
        project,
        tag=tag,
        base_image=base_image.tag,
        ca_bundle=base_image.ca_bundle,
        client=docker_client,
    )
    try:
        ran = run_in_container(tag, ["-c", PROBE], entrypoint=["python"])
        assert (ran.exit_code, ran.stdout.strip()) == (0, "[]"), ran.output
        assert report.size_over_base < 5_000_000  # the project itself, no second set of tools
    finally:
        with contextlib.suppress(Exception):
            docker_client.images.remove(tag, force=True)
