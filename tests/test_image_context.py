"""What goes into the image builds: the hook-processor wheel, base tags, the project's context."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from hook_processor import _image_context, container


def test_a_wheel_repacked_from_an_installed_distribution_has_the_same_files(tmp_path: Path) -> None:
    wheel = _image_context.build_wheel(tmp_path / "dist")  # from this checkout
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-compile",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    dist_info = next(target.glob("hook_processor-*.dist-info"))
    repacked = _image_context.repack_installed(
        importlib.metadata.PathDistribution(dist_info), tmp_path / "repacked"
    )

    def files(path: Path) -> dict[str, bytes]:
        with zipfile.ZipFile(path) as archive:
            return {n: archive.read(n) for n in archive.namelist() if not n.endswith("/RECORD")}

    assert repacked.name == wheel.name
    assert files(repacked) == files(wheel)
    assert "hook_processor/_data/Dockerfile.base" in files(repacked)
    assert _image_context.wheel_digest(repacked) != ""


def test_base_tags_are_valid_docker_tags() -> None:
    tag = container.base_tag("python:3.11-slim", "0.1.0")
    assert tag == "hook-processor-base:0.1.0-python-3.11-slim"
    tag = container.base_tag("registry.example:5000/team/python@sha256:abc", "0.1.0")
    assert tag == "hook-processor-base:0.1.0-registry.example-5000-team-python"


def test_the_context_honours_dockerignore_and_adds_the_bundle(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "code.py").write_text("x = 1\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_code.py").write_text("")
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / ".dockerignore").write_text("# comment\ntests\n")
    context, digest = _image_context.project_context(tmp_path, "Dockerfile", b"PEM\n")
    with tarfile.open(fileobj=context) as tar:
        names = tar.getnames()
    assert set(names) == {".dockerignore", "Dockerfile", "pkg", "pkg/code.py", "ca-bundle.pem"}

    # The digest follows the files the image is built from, not the bundle.
    again, same = _image_context.project_context(tmp_path, "Dockerfile", None)
    with tarfile.open(fileobj=again) as tar:
        assert same == digest and "ca-bundle.pem" not in tar.getnames()
    (tmp_path / "pkg" / "code.py").write_text("x = 2\n")
    assert _image_context.project_context(tmp_path, "Dockerfile", None)[1] != digest
