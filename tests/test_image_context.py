"""What goes into the image builds: the hook-processor wheel, base tags, the project's context."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from hook_processor import _image_context, container, scaffold
from hook_processor.errors import OptionsError


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
    # The base image's key: an editable install (wheel from the source tree) and a wheel install
    # (repacked from its RECORD) of the same source are the same hook-processor.
    assert _image_context.package_digest(repacked) == _image_context.package_digest(wheel)


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


def _rewrite(wheel: Path, dest: Path, change: dict[str, bytes]) -> Path:
    """A copy of ``wheel`` with some members replaced (zip timestamps changed too)."""
    with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(dest, "w") as target:
        for info in source.infolist():
            data = change.get(info.filename, source.read(info))
            target.writestr(zipfile.ZipInfo(info.filename, (2024, 5, 6, 7, 8, 10)), data)
    return dest


def test_the_package_digest_follows_what_is_installed_not_how_it_was_packed(
    tmp_path: Path,
) -> None:
    wheel = _image_context.build_wheel(tmp_path / "dist")
    digest = _image_context.package_digest(wheel)
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        metadata = archive.read(f"{dist_info}/METADATA")
        record = archive.read(f"{dist_info}/RECORD")
        wheel_file = archive.read(f"{dist_info}/WHEEL")

    # Other timestamps, another RECORD order, another build backend version: the same install.
    same = _rewrite(
        wheel,
        tmp_path / "same.whl",
        {
            f"{dist_info}/RECORD": b"\n".join(reversed(record.splitlines())) + b"\n",
            f"{dist_info}/WHEEL": wheel_file.replace(b"Generator: ", b"Generator: other-"),
            f"{dist_info}/METADATA": metadata + b"\nA longer description.\n",
        },
    )
    assert _image_context.package_digest(same) == digest

    # One byte of the package, or one more dependency: another hook-processor.
    code = _rewrite(wheel, tmp_path / "code.whl", {"hook_processor/errors.py": b"# changed\n"})
    assert _image_context.package_digest(code) != digest
    deps = metadata.replace(b"Requires-Dist: ", b"Requires-Dist: extra-package\nRequires-Dist: ", 1)
    dependency = _rewrite(wheel, tmp_path / "deps.whl", {f"{dist_info}/METADATA": deps})
    assert _image_context.package_digest(dependency) != digest


def _project(root: Path, table: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(
        '[tool.hook-processor]\nname = "probe"\nentrypoint = "probe.processor:process"\n' + table,
        encoding="utf-8",
    )
    return root


def test_the_python_image_comes_from_the_flag_the_environment_or_the_project(
    tmp_path: Path,
) -> None:
    project = _project(tmp_path / "p", 'python_image = "registry.local/python:3.12"\n')
    env = {"HOOK_PYTHON_IMAGE": "mirror.local/python:3.11-slim"}
    choice = _image_context.python_image_choice

    assert choice("local/python:x", project, env) == _image_context.PythonImage(
        "local/python:x", "--python-image"
    )
    assert choice(None, project, env) == _image_context.PythonImage(
        "mirror.local/python:3.11-slim", "HOOK_PYTHON_IMAGE"
    )
    from_project = choice(None, project, {})
    assert from_project.image == "registry.local/python:3.12"
    assert "python_image" in from_project.source and "[tool.hook-processor]" in from_project.source
    default = choice(None, _project(tmp_path / "plain"), {"HOOK_PYTHON_IMAGE": "  "})
    assert default.is_default and default.image == _image_context.default_python_image()
    assert default.image.startswith("python:3.")


def test_a_bad_python_image_in_pyproject_is_named(tmp_path: Path) -> None:
    project = _project(tmp_path / "p", "python_image = 3\n")
    with pytest.raises(OptionsError, match=r"python_image: a docker image name"):
        _image_context.python_image_choice(None, project, {})


def _names(root: Path, skipped: list[str] | None = None) -> set[str]:
    args = (skipped,) if skipped is not None else ()
    context, _ = _image_context.project_context(root, "Dockerfile", None, *args)
    with tarfile.open(fileobj=context) as tar:
        return set(tar.getnames())


def test_the_scaffold_keeps_run_outputs_and_caches_out_of_the_image(tmp_path: Path) -> None:
    project = scaffold.new("probe_ignore", tmp_path)
    leftovers = [
        "out/a.txt",
        "out-inprocess/a.txt",
        "out-container/a.txt",
        "hook-work/output/a.txt",
        ".pytest_cache/v/cache/lastfailed",
        ".mypy_cache/3.11/x.json",
        ".ruff_cache/0.5/x",
        "probe_ignore/__pycache__/processor.cpython-311.pyc",
        "probe_ignore.egg-info/PKG-INFO",
        ".venv/bin/python",
        "dist/probe_ignore-0.1.0.whl",
        "build/lib/x.py",
        ".git/HEAD",
        ".coverage",
    ]
    for name in leftovers:
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text("x")
    assert _names(project) == {
        ".dockerignore",
        ".gitignore",
        "Dockerfile",
        "README.md",
        "pyproject.toml",
        "probe_ignore",
        "probe_ignore/__init__.py",
        "probe_ignore/processor.py",
    }


def test_run_output_folders_are_left_out_whatever_their_name(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "code.py").write_text("x = 1\n")
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    run_output = tmp_path / "results-june"  # `hook-processor run --output results-june`
    (run_output / "sub").mkdir(parents=True)
    (run_output / "sub" / "result.tif").write_bytes(b"\0" * 10)
    (run_output / ".hook-processor-run.json").write_text("{}")
    work = tmp_path / "data" / "scratch-work"  # HOOK_WORK_DIR of an `exec`
    (work / "output").mkdir(parents=True)
    (work / "output" / "x.txt").write_text("x")
    (work / ".hook-processor-workdir").touch()
    _, before = _image_context.project_context(tmp_path, "Dockerfile", None)

    skipped: list[str] = []
    assert _names(tmp_path, skipped) == {"Dockerfile", "pkg", "pkg/code.py", "data"}
    assert skipped == ["data/scratch-work/", "results-june/"]
    # Another run's output changes nothing that the image is built from.
    (run_output / "sub" / "result.tif").write_bytes(b"\1" * 20)
    os.utime(run_output, (0, 0))
    assert _image_context.project_context(tmp_path, "Dockerfile", None)[1] == before
