"""Offline builds and clean images, for real on the session's base image.

- The Python image is set once: ``HOOK_PYTHON_IMAGE`` or ``python_image`` of
  ``[tool.hook-processor]``; an image that cannot be pulled is one error naming where to set it.
- An editable install and a wheel install of the same source share one base image.
- Builds leave no untagged images behind; run outputs never reach the image nor force a rebuild.

The engine is shared (other sessions may build at the same time), so every count here is of
images carrying this test's own marks: a unique project name, a unique label.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import container_helpers
import pytest
from click.testing import CliRunner
from container_helpers import HELLO, REPO_ROOT, SAMPLE, copy_project

from hook_processor import _image_build, _image_context, container
from hook_processor.errors import ContainerError

pytestmark = pytest.mark.container

# Nothing listens on the discard port of loopback: a pull from there is refused at once (and no
# traffic leaves the machine).
REFUSED = "127.0.0.1:9/hook-processor-test/python:none"
PROBE_LABEL = "io.hook-processor.test-probe"


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    # Without the developer's HOOK_PYTHON_IMAGE: these tests decide where the image is set.
    return container_helpers.cli(*args, env=env, unset=("HOOK_PYTHON_IMAGE",))


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def images(docker_client: Any) -> Iterator[list[str]]:
    """Tags the test creates; removed afterwards (the engine is shared and long-lived)."""
    import docker.errors

    tags: list[str] = []
    yield tags
    for tag in tags:
        with contextlib.suppress(docker.errors.DockerException):  # in use: leave it
            docker_client.api.remove_image(tag)


def dangling(docker_client: Any, label: str) -> list[str]:
    return list(docker_client.api.images(filters={"dangling": True, "label": label}, quiet=True))


# --- item 2: the Python image, set once ---------------------------------------------------------


def test_the_python_image_is_set_once_in_the_environment_or_in_pyproject(
    base_image: Any, python_image: str, docker_client: Any, tmp_path: Path, images: list[str]
) -> None:
    wanted_base = container.base_tag(python_image)

    # HOOK_PYTHON_IMAGE, for run --mode container (no --python-image): the project's image is
    # built on the base image of that Python image.
    from_env = unique("hp_env_probe")
    images.append(f"{from_env}:1.1.0")
    ran = cli(
        "run",
        str(copy_project(tmp_path, from_env)),
        "--input",
        str(SAMPLE),
        "--output",
        str(tmp_path / "out"),
        "--mode",
        "container",
        HOOK_PYTHON_IMAGE=python_image,
    )
    assert ran.returncode == 0, ran.stderr
    assert (tmp_path / "out" / "example.data").read_bytes() == (
        (SAMPLE / "example.data").read_bytes().upper()
    )
    labels = docker_client.images.get(f"{from_env}:1.1.0").labels
    assert labels[container.LABEL_BASE_IMAGE] == wanted_base

    # python_image in [tool.hook-processor], for build (no flag, no environment variable).
    from_project = unique("hp_pyproject_probe")
    images.append(f"{from_project}:1.1.0")
    project = copy_project(tmp_path, from_project)
    pyproject = project / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text(encoding="utf-8").replace(
            f'name = "{from_project}"', f'name = "{from_project}"\npython_image = "{python_image}"'
        ),
        encoding="utf-8",
    )
    built = cli("build", str(project))
    assert built.returncode == 0, built.stderr
    assert "over base   " in built.stdout and wanted_base in built.stdout, built.stdout
    labels = docker_client.images.get(f"{from_project}:1.1.0").labels
    assert labels[container.LABEL_BASE_IMAGE] == wanted_base


@pytest.mark.parametrize("command", ["build", "run"])
def test_a_python_image_that_cannot_be_pulled_is_one_error_naming_where_to_set_it(
    command: str, docker_client: Any, tmp_path: Path
) -> None:
    # A project of its own: no image of it exists, so the base image must be built first.
    project = str(copy_project(tmp_path, unique("hp_unpullable_probe")))
    args = ["build", project]
    if command == "run":
        args = ["run", project, "--input", str(SAMPLE), "--output", str(tmp_path / "o")]
        args += ["--mode", "container"]
    ran = cli(*args, HOOK_PYTHON_IMAGE=REFUSED)
    assert ran.returncode == 2, ran.stderr
    assert ran.stderr.count("Error: ") == 1 and "Traceback" not in ran.stderr, ran.stderr
    error = ran.stderr[ran.stderr.index("Error: ") :]
    assert len(error.strip().splitlines()) == 1, error
    assert f"the Python image {REFUSED} (from HOOK_PYTHON_IMAGE)" in error
    assert "cannot be pulled" in error and "connection refused" in error
    for fix in ("--python-image IMAGE", "HOOK_PYTHON_IMAGE=IMAGE", 'python_image = "IMAGE"'):
        assert fix in error, error


def test_the_default_python_image_that_cannot_be_pulled_names_the_flag_and_the_variable(
    docker_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As on an offline machine, where python:3.x-slim cannot be pulled (here: the default of
    Dockerfile.base is pointed at a refused registry, so that this holds on any machine)."""
    from hook_processor.cli import main

    monkeypatch.setattr(_image_context, "default_python_image", lambda: REFUSED)
    monkeypatch.delenv("HOOK_PYTHON_IMAGE", raising=False)
    result = CliRunner().invoke(main, ["build", str(HELLO)])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stderr.count("Error: ") == 1, result.stderr
    error = result.stderr[result.stderr.index("Error: ") :]
    assert f"the Python image {REFUSED} (the default) is not in the local engine" in error
    assert "--python-image IMAGE" in error and "HOOK_PYTHON_IMAGE=IMAGE" in error
    assert 'python_image = "IMAGE" under [tool.hook-processor]' in error


WHEEL_INSTALL_BUILD = """
import json, sys
import hook_processor
from hook_processor import _image_context, container

notes = []
report = container.build_base(
    python_image=sys.argv[1], tag=sys.argv[2], on_event=lambda e: notes.append(e.text)
)
print(json.dumps({
    "package": hook_processor.__file__,
    "source_tree": str(_image_context.source_tree()),
    "image_id": report.image_id,
    "built": report.built,
    "notes": notes,
}))
"""


def test_an_editable_and_a_wheel_install_of_one_source_share_the_base_image(
    base_image: Any, python_image: str, docker_client: Any, tmp_path: Path, images: list[str]
) -> None:
    # Built (or found up to date) by this source tree: an editable install.
    assert _image_context.source_tree() == REPO_ROOT
    editable = container.build_base(python_image=python_image, client=docker_client)
    # Under a tag of this test alone, so that no other session's build moves it meanwhile.
    tag = f"hook-processor-base:reuse-probe-{uuid.uuid4().hex[:8]}"
    images.append(tag)
    docker_client.api.tag(editable.image_id, *tag.split(":"))

    # The same source as a wheel install: pip installs the wheel into a plain folder, and a
    # process importing hook_processor from there builds the base image.
    wheel = _image_context.build_wheel(tmp_path / "dist")
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", site, wheel],
        check=True,
        capture_output=True,
        timeout=300,
    )
    ran = subprocess.run(
        [sys.executable, "-c", WHEEL_INSTALL_BUILD, python_image, tag],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(site)},
    )
    assert ran.returncode == 0, ran.stderr
    wheel_install = json.loads(ran.stdout)
    assert wheel_install["package"] == str(site / "hook_processor" / "__init__.py")
    assert wheel_install["source_tree"] == "None"  # repacked from the installed files
    assert wheel_install["built"] is False, wheel_install["notes"]
    assert wheel_install["image_id"] == editable.image_id
    assert any(note.startswith(f"reusing {tag}: up to date") for note in wheel_install["notes"])


# --- item 18: no leftovers, run outputs out of the image --------------------------------------


def _image_id(stdout: str) -> str:
    return next(line.split()[1] for line in stdout.splitlines() if line.startswith("  image "))


def test_run_outputs_never_reach_the_image_nor_force_a_rebuild(
    base_image: Any, docker_client: Any, run_in_container: Any, tmp_path: Path, images: list[str]
) -> None:
    name = unique("hp_outputs_probe")
    images.append(f"{name}:1.1.0")
    project = copy_project(tmp_path, name)
    first = cli("build", str(project), "--base-image", base_image.tag)
    assert first.returncode == 0, first.stderr

    # Runs into the project folder: out-inprocess/ (a .dockerignore pattern) and results/ (no
    # pattern: a run output by its marker), and a stray exec work folder.
    for output in ("out-inprocess", "results"):
        ran = cli("run", str(project), "--input", str(SAMPLE), "--output", str(project / output))
        assert ran.returncode == 0, ran.stderr
        assert (project / output / ".hook-processor-run.json").is_file()
    (project / "scratch" / "output").mkdir(parents=True)
    (project / "scratch" / ".hook-processor-workdir").touch()

    again = cli("build", str(project), "--base-image", base_image.tag)
    assert again.returncode == 0, again.stderr
    assert _image_id(again.stdout) == _image_id(first.stdout)
    assert "(up to date)" in again.stdout.split("stages", 1)[1]
    assert f"reusing {name}:1.1.0: up to date" in again.stderr
    assert "left out of the build context" in again.stderr
    assert "results/" in again.stderr and "scratch/" in again.stderr

    listing = run_in_container(f"{name}:1.1.0", ["-c", "ls -A /app"], entrypoint=["sh"])
    assert listing.exit_code == 0, listing.output
    assert sorted(listing.stdout.split()) == sorted(
        [".dockerignore", ".gitignore", "Dockerfile", "README.md", "dedl_hello_world"]
        + ["pyproject.toml"]
    )


def test_two_builds_with_a_change_leave_no_untagged_images(
    base_image: Any, docker_client: Any, tmp_path: Path, images: list[str]
) -> None:
    name = unique("hp_dangling_probe")
    images.append(f"{name}:1.1.0")
    probe = uuid.uuid4().hex
    project = copy_project(tmp_path, name)
    dockerfile = project / "Dockerfile"
    text = dockerfile.read_text(encoding="utf-8")
    assert "FROM ${BASE_IMAGE} AS build\n" in text
    # A label on the build stage marks its images as this test's (the stage's last image is the
    # one the classic builder leaves untagged).
    dockerfile.write_text(
        text.replace(
            "FROM ${BASE_IMAGE} AS build\n",
            f"FROM ${{BASE_IMAGE}} AS build\nLABEL {PROBE_LABEL}={probe}\n",
        ),
        encoding="utf-8",
    )
    stage_label = f"{PROBE_LABEL}={probe}"
    image_label = f"org.opencontainers.image.title={name}"
    assert dangling(docker_client, stage_label) == dangling(docker_client, image_label) == []

    first = container.build_processor(project, base_image=base_image.tag, client=docker_client)
    processor = project / "dedl_hello_world" / "processor.py"
    processor.write_text(processor.read_text(encoding="utf-8") + "\n# changed\n", "utf-8")
    second = container.build_processor(project, base_image=base_image.tag, client=docker_client)

    assert second.image_id != first.image_id and all(s.built for s in second.stages)
    assert dangling(docker_client, stage_label) == []  # no build stage left behind
    assert dangling(docker_client, image_label) == []  # nor the image the rebuild untagged
    assert docker_client.api.images(filters={"label": stage_label}, quiet=True) == []


def test_a_failed_multi_stage_build_leaves_no_untagged_images(
    python_image: str, docker_client: Any, tmp_path: Path
) -> None:
    """The mechanism every build uses (the base image's too), on a two-stage Dockerfile."""
    probe = uuid.uuid4().hex
    label = f"{PROBE_LABEL}={probe}"
    (tmp_path / "Dockerfile").write_text(
        f"FROM {python_image} AS build\nLABEL {label}\nRUN echo {probe} > /made\n"
        f"FROM {python_image}\nCOPY --from=build /made /made\nRUN false\n",
        encoding="utf-8",
    )
    with pytest.raises(ContainerError, match="RUN false"):
        _image_build.build(docker_client, "probe", lambda _e: None, path=str(tmp_path), pull=False)
    assert dangling(docker_client, label) == []
    assert docker_client.api.images(filters={"label": label}, quiet=True, all=True) == []
