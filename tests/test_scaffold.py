"""``hook-processor new``: names, refusals, --force, rollback, the example, the wheel end to end."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jinja2
import pytest
from click.testing import CliRunner

from hook_processor import runtime, scaffold
from hook_processor.cli import main
from hook_processor.errors import ExitCode, OptionsError
from hook_processor.loader import load_processor, read_project
from hook_processor.options import OptionSources

REPO_ROOT = Path(__file__).resolve().parent.parent
HELLO_WORLD = REPO_ROOT / "examples" / "hello_world"
TEMPLATE = REPO_ROOT / "templates" / "project"
SAMPLE_TEXT = (HELLO_WORLD / "sample" / "input" / "example.data").read_text(encoding="utf-8")
GENERATED = {
    ".dockerignore",
    ".gitignore",
    "Dockerfile",
    "README.md",
    "pyproject.toml",
    "sample/input/example.data",
    "tests/test_processor.py",
    "{package}/__init__.py",
    "{package}/processor.py",
}


def unique_name() -> str:
    return f"proc_{uuid.uuid4().hex[:8]}"


def tree(root: Path) -> dict[str, bytes]:
    """Every file under root: {relative posix path: content}."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def isolated_imports() -> Iterator[None]:
    """Forget the generated packages imported by a test (they live in tmp_path)."""
    path, modules = list(sys.path), set(sys.modules)
    yield
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        del sys.modules[name]


def new(*args: str) -> object:
    return CliRunner().invoke(main, ["new", *args])


# --- the project -------------------------------------------------------------------------------


def test_new_creates_the_project(tmp_path: Path, isolated_imports: None) -> None:
    name = unique_name()
    result = new(name, "--dir", str(tmp_path / "scratch"), "--description", 'NDVI "maps"')

    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    project = tmp_path / "scratch" / name
    assert f"Created {project}" in result.stdout
    assert "hook-processor run . --input sample/input --output out" in result.stdout
    assert set(tree(project)) == {p.format(package=name) for p in GENERATED}
    config = read_project(project)
    assert (config.name, config.entrypoint, config.version, config.description) == (
        name,
        f"{name}.processor:process",
        "0.1.0",
        'NDVI "maps"',
    )
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["dependencies"] == ["hook-processor>=0.1.0"]
    processor = load_processor(config.entrypoint, search_path=project)
    assert processor.options_model is not None
    assert processor.options_model.__name__ == "ProcessorOptions"
    assert processor.wants_context


def test_hyphenated_name_gives_an_underscored_package(tmp_path: Path) -> None:
    result = new("my-ndvi-2", "--dir", str(tmp_path))

    assert result.exit_code == 0, result.output
    project = tmp_path / "my-ndvi-2"
    assert (project / "my_ndvi_2" / "processor.py").is_file()
    config = read_project(project)
    assert (config.name, config.entrypoint) == ("my-ndvi-2", "my_ndvi_2.processor:process")
    assert config.display_name == "My Ndvi 2"
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["name"] == "my-ndvi-2"
    assert pyproject["project"]["description"] == "My Ndvi 2 processor"


def test_the_generated_dockerfile_starts_from_the_base_image(tmp_path: Path) -> None:
    new("my_ndvi", "--dir", str(tmp_path))
    dockerfile = (tmp_path / "my_ndvi" / "Dockerfile").read_text(encoding="utf-8")
    lines = [line for line in dockerfile.splitlines() if line and not line.startswith("#")]

    assert lines[0] == "ARG BASE_IMAGE=hook-processor-base:0.1.0"
    froms = [line for line in lines if line.startswith("FROM ")]
    assert froms[-1] == "FROM ${BASE_IMAGE}"  # the image is the base image plus the project
    assert "ENV HOOK_PROJECT_DIR=/app" in lines
    ignored = (tmp_path / "my_ndvi" / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert {".git", "tests", "sample"} <= set(ignored)


def test_the_generated_processor_runs_through_the_runtime(
    s3_server, s3, bucket: str, tmp_path: Path, isolated_imports: None
) -> None:
    # What the template's tests check through the pytest plugin, here through the runtime itself.
    name = unique_name()
    project = scaffold.new(name, tmp_path)
    s3.put_object(Bucket=bucket, Key="in/example.data", Body=SAMPLE_TEXT.encode())
    s3.put_object(Bucket=bucket, Key="in/raw.bin", Body=b"\xff\xfe")
    env = {
        "INPUT_S3_ENDPOINT_URL": s3_server.endpoint_url,
        "INPUT_S3_PATH": f"s3://{bucket}/in/",
        "INPUT_S3_ACCESS_KEY": s3_server.access_key,
        "INPUT_S3_SECRET_KEY": s3_server.secret_key,
        "S3_BUCKET": bucket,
        "S3_ACCESS_KEY": s3_server.access_key,
        "S3_SECRET_KEY": s3_server.secret_key,
        "HOOK_WORK_DIR": str(tmp_path / "work"),
    }

    for prefix, case, expected in (
        ("upper", None, SAMPLE_TEXT.upper()),
        ("lower", "lower", SAMPLE_TEXT.lower()),
    ):
        options = {"text_case": case} if case else {}
        result = runtime.run(
            OptionSources(env={**env, "S3_PREFIX": prefix}, cli=options),
            project_dir=project,
            log_stream=io.StringIO(),
        )
        assert result.exit_code == ExitCode.COMPLETED, result.status_message
        body = s3.get_object(Bucket=bucket, Key=f"{prefix}/example.data")["Body"].read()
        assert body.decode() == expected
        assert s3.get_object(Bucket=bucket, Key=f"{prefix}/raw.bin")["Body"].read() == b"\xff\xfe"

    bad = runtime.run(
        OptionSources(env=env, cli={"text_case": "shout"}),
        project_dir=project,
        log_stream=io.StringIO(),
    )
    assert bad.exit_code == ExitCode.BAD_OPTIONS
    assert "text_case" in bad.status_message


# --- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("My_Proc", "not a valid Hook workflow name"),
        ("1proc", "not a valid Hook workflow name"),
        ("_proc", "not a valid Hook workflow name"),
        ("my proc", "not a valid Hook workflow name"),
        ("my.proc", "not a valid Hook workflow name"),
        ("my/proc", "not a valid Hook workflow name"),
        ("class", "a Python keyword"),
        ("import", "a Python keyword"),
        ("json", "would shadow the module"),
        ("hook-processor", "would shadow the module"),
        ("tests", "would shadow the module"),
    ],
)
def test_bad_names_are_refused_and_nothing_is_created(tmp_path: Path, name: str, why: str) -> None:
    result = new(name, "--dir", str(tmp_path / "scratch"))

    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("Error: NAME ")
    assert why in result.stderr
    assert not (tmp_path / "scratch").exists()


def test_an_existing_non_empty_folder_is_refused(tmp_path: Path) -> None:
    project = tmp_path / "my_proc"
    project.mkdir()
    (project / "notes.txt").write_text("mine")

    result = new("my_proc", "--dir", str(tmp_path))

    assert result.exit_code == 2
    assert result.stdout == ""
    assert f"Error: {project} already exists and is not empty" in result.stderr
    assert "--force" in result.stderr
    assert tree(project) == {"notes.txt": b"mine"}


def test_an_existing_empty_folder_is_used(tmp_path: Path) -> None:
    (tmp_path / "my_proc").mkdir()

    result = new("my_proc", "--dir", str(tmp_path))

    assert result.exit_code == 0, result.output
    assert (tmp_path / "my_proc" / "pyproject.toml").is_file()


def test_a_file_in_the_way_is_refused_even_with_force(tmp_path: Path) -> None:
    (tmp_path / "my_proc").write_text("a file")

    result = new("my_proc", "--dir", str(tmp_path), "--force")

    assert result.exit_code == 2
    assert "exists and is not a folder" in result.stderr
    assert (tmp_path / "my_proc").read_text() == "a file"


def test_force_overwrites_template_files_and_keeps_the_others(tmp_path: Path) -> None:
    project = tmp_path / "my_proc"
    project.mkdir()
    (project / "README.md").write_text("old readme")
    (project / "notes.txt").write_text("mine")

    result = new("my_proc", "--dir", str(tmp_path), "--force")

    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert (project / "notes.txt").read_text() == "mine"
    assert (project / "README.md").read_text().startswith("# My Proc\n")
    assert (project / "my_proc" / "processor.py").is_file()


def test_a_multi_line_description_is_refused(tmp_path: Path) -> None:
    result = new("my_proc", "--dir", str(tmp_path), "--description", "one\ntwo")

    assert result.exit_code == 2
    assert "--description must be one non-empty line" in result.stderr
    assert list(tmp_path.iterdir()) == []


# --- nothing left behind -----------------------------------------------------------------------


def test_a_template_error_writes_nothing(tmp_path: Path) -> None:
    broken = tmp_path / "template"
    shutil.copytree(TEMPLATE, broken)
    with (broken / "README.md.jinja").open("a", encoding="utf-8") as handle:
        handle.write("{{ no_such_variable }}\n")  # StrictUndefined: an error, not ""

    with pytest.raises(jinja2.UndefinedError, match="no_such_variable"):
        scaffold.new("my_proc", tmp_path / "parent" / "scratch", template=broken)

    assert not (tmp_path / "parent").exists()


def test_a_failure_half_way_undoes_everything(tmp_path: Path) -> None:
    # --force into a folder whose "tests" is a file: README.md, pyproject.toml and sample/ are
    # written (README.md over the user's) before tests/test_processor.py fails.
    project = tmp_path / "my_proc"
    project.mkdir()
    (project / "README.md").write_text("old readme")
    (project / "tests").write_text("a file, not a folder")
    before = tree(project)

    result = new("my_proc", "--dir", str(tmp_path), "--force")

    assert result.exit_code == 2
    assert result.stdout == ""
    assert f"Error: cannot write the project into {project}" in result.stderr
    assert "nothing was left behind" in result.stderr
    assert tree(project) == before
    assert sorted(p.name for p in project.iterdir()) == ["README.md", "tests"]


def test_a_failure_removes_the_folders_it_created(tmp_path: Path, monkeypatch) -> None:
    written: list[Path] = []
    real_write = Path.write_bytes

    def failing_write(self: Path, data: bytes) -> int:
        if len(written) == 4:
            raise OSError(28, "No space left on device", str(self))
        written.append(self)
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", failing_write)
    with pytest.raises(OptionsError, match="No space left on device"):
        scaffold.new("my_proc", tmp_path / "a" / "b")

    assert len(written) == 4
    assert list(tmp_path.iterdir()) == []


# --- the templates and the example -------------------------------------------------------------


def test_templates_come_from_the_checkout_in_an_editable_install() -> None:
    assert scaffold.templates_root() in (
        REPO_ROOT / "templates",
        Path(scaffold.__file__).parent / "_templates",
    )
    assert (scaffold.templates_root() / "project" / "pyproject.toml.jinja").is_file()


def _normalised(text: str) -> str:
    """Hide the hook-processor version, which the example pins by hand."""
    text = re.sub(r"(hook-processor(?:\[harness\])?>=)[\w.]+", r"\1VERSION", text)
    return re.sub(r"(hook-processor-base:)[\w.]+", r"\1VERSION", text)


def _keys(table: dict, prefix: str = "") -> set[str]:
    keys = set()
    for key, value in table.items():
        keys.add(prefix + key)
        if isinstance(value, dict):
            keys |= _keys(value, f"{prefix}{key}.")
    return keys


def test_the_example_is_what_new_generates(tmp_path: Path) -> None:
    """examples/hello_world = `hook-processor new dedl_hello_world` + own code, tests, README."""
    scaffold.new("dedl_hello_world", tmp_path, description="DEDL Hello World processor")
    generated = tree(tmp_path / "dedl_hello_world")
    ignored = re.compile(r"(^|/)(__pycache__|\.pytest_cache|hook-work|out)(/|$)|\.egg-info(/|$)")
    example = {k: v for k, v in tree(HELLO_WORLD).items() if not ignored.search(k)}
    own = {
        "README.md",
        "tests/test_processor.py",
        "dedl_hello_world/processor.py",
        "dedl_hello_world/__init__.py",
    }

    assert set(example) == set(generated)
    for path in sorted(set(generated) - own - {"pyproject.toml"}):
        assert _normalised(example[path].decode()) == _normalised(generated[path].decode()), path

    ours = tomllib.loads(_normalised(generated["pyproject.toml"].decode()))
    theirs = tomllib.loads(_normalised(example["pyproject.toml"].decode()))
    assert _keys(theirs) == _keys(ours)
    values = {"version", "description", "display_name"}
    for table in ("project", "tool.hook-processor"):
        a, b = ours, theirs
        for part in table.split("."):
            a, b = a[part], b[part]
        for key in values:
            a.pop(key, None), b.pop(key, None)
    assert theirs == ours
    # The example keeps the seed's workflow: other tests depend on it.
    seed = read_project(HELLO_WORLD)
    assert (seed.name, seed.entrypoint, seed.version, seed.display_name) == (
        "dedl_hello_world",
        "dedl_hello_world.processor:process",
        "1.1.0",
        "DEDL Hello World",
    )


# --- from the wheel: the generated project passes its own tests --------------------------------


def _run(args: list[str | Path], cwd: Path, env: dict[str, str], timeout: float = 240) -> str:
    child = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert child.returncode == 0, (
        f"{' '.join(map(str, args))} exited {child.returncode}\n"
        f"stdout:\n{child.stdout[-4000:]}\nstderr:\n{child.stderr[-4000:]}"
    )
    return child.stdout


def _clean_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME") and not k.startswith("PYTEST_")
    }
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


@pytest.fixture(scope="module")
def built_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """hook-processor's wheel, built from this checkout once for the module."""
    dist = tmp_path_factory.mktemp("dist")
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, REPO_ROOT],
        cwd=dist,
        env=_clean_env(),
    )
    (wheel,) = dist.glob("hook_processor-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        assert "hook_processor/_templates/project/pyproject.toml.jinja" in names
        # The order dashboard's page and files (serve's /), read from the package at run time.
        for name in ("index.html", "dashboard.js", "api.js", "dom.js", "dashboard.css"):
            assert f"hook_processor/service/static/{name}" in names
    return wheel


@pytest.mark.wheel
def test_a_new_project_from_the_wheel_passes_its_own_tests(
    tmp_path: Path, built_wheel: Path
) -> None:
    """Wheel -> fresh venv -> `new` -> install -> its pytest -> `hook-processor run` on its sample.

    A plain venv (no system site-packages) and the wheel with no extras (plus pytest, from PyPI):
    so a template missing from the wheel or a dependency that only an extra brings fails here.
    """
    timings: dict[str, float] = {}
    began = time.perf_counter()
    env = _clean_env()

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv], cwd=tmp_path, env=env)
    python, tool = venv / "bin" / "python", venv / "bin" / "hook-processor"
    requirements = [str(built_wheel), "pytest>=8", "hatchling>=1.21"]
    _run([python, "-m", "pip", "install", "-q", *requirements], cwd=tmp_path, env=env)
    timings["venv"] = time.perf_counter() - began

    _run([tool, "new", "my_ndvi", "--dir", tmp_path / "scratch"], cwd=tmp_path, env=env)
    project = tmp_path / "scratch" / "my_ndvi"
    # hatchling came with the first install: no second download for the build backend.
    _run(
        [python, "-m", "pip", "install", "-q", "--no-build-isolation", project],
        cwd=tmp_path,
        env=env,
    )
    tests = _run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=project, env=env)
    assert re.search(r"\b5 passed\b", tests), tests

    out = tmp_path / "out"
    _run(
        [tool, "run", project, "--input", project / "sample" / "input", "--output", out],
        cwd=tmp_path,
        env=env,
    )
    assert (out / "example.data").read_text(encoding="utf-8") == SAMPLE_TEXT.upper()
    described = _run([tool, "describe", project, "--format", "json"], cwd=tmp_path, env=env)
    assert '"Name": "text_case"' in described
    timings["project"] = time.perf_counter() - began - timings["venv"]
    print("wheel test timings (s):", {k: round(v, 1) for k, v in timings.items()})


@pytest.mark.wheel
def test_the_image_install_of_the_wheel_runs_exec_and_names_what_the_rest_needs(
    tmp_path: Path, built_wheel: Path, s3: Any, bucket: str
) -> None:
    """The base image's install (the wheel with --no-deps, then the runtime's requirements) in a
    fresh venv: no moto, docker or jinja2; `exec` runs the seed; `new` and `run` say what to
    install (exit 2, one Error line, no traceback, no --output folder)."""
    env = _clean_env()
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv], cwd=tmp_path, env=env)
    python, tool = venv / "bin" / "python", venv / "bin" / "hook-processor"
    _run([python, "-m", "pip", "install", "-q", "--no-deps", built_wheel], cwd=tmp_path, env=env)
    # The very command Dockerfile.base runs.
    _run(
        [python, "-m", "hook_processor._dependencies", "image-install", "-q"],
        cwd=tmp_path,
        env=env,
    )
    probe = "import importlib.util as u; print([m for m in {} if u.find_spec(m)])".format(
        ("moto", "docker", "jinja2", "werkzeug", "flask")
    )
    assert _run([python, "-c", probe], cwd=tmp_path, env=env).strip() == "[]"
    # The trimmed metadata tells the truth: nothing is missing, and a processor project that
    # depends on hook-processor pulls none of the author's tools into its image.
    assert "No broken requirements" in _run([python, "-m", "pip", "check"], cwd=tmp_path, env=env)
    assert "Commands:" in _run([tool, "--help"], cwd=tmp_path, env=env)

    for args, module, line in (
        (["new", "plain_proc"], "jinja2", "pip install 'jinja2>=3.1'"),
        (
            ["run", HELLO_WORLD, "--input", HELLO_WORLD / "sample" / "input", "--output", "out"],
            "moto",
            "pip install 'moto[server]>=5.0'",
        ),
    ):
        child = subprocess.run(
            [str(tool), *map(str, args)], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert child.returncode == 2, child.stderr
        assert child.stderr.startswith(
            f"Error: hook-processor {args[0]} needs the Python module {module}"
        ), child.stderr
        assert line in child.stderr and "Traceback" not in child.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "plain_proc").exists()

    s3.put_object(Bucket=bucket, Key="in/example.data", Body=SAMPLE_TEXT.encode())
    endpoint = s3.meta.endpoint_url
    exec_env = {
        **env,
        "HOOK_WORK_DIR": str(tmp_path / "work"),
        "SOURCE_S3_ENDPOINT_URL": endpoint,
        "SOURCE_S3_PATH": f"s3://{bucket}/in/",
        "SOURCE_S3_ACCESS_KEY": "test",
        "SOURCE_S3_SECRET_KEY": "test",
        "OUTPUT_S3_PATH": f"s3://{bucket}/out",
        "OUTPUT_S3_ACCESS_KEY": "test",
        "OUTPUT_S3_SECRET_KEY": "test",
    }
    _run([tool, "exec", HELLO_WORLD], cwd=tmp_path, env=exec_env)
    published = s3.get_object(Bucket=bucket, Key="out/example.data")["Body"].read()
    assert published == SAMPLE_TEXT.upper().encode()
    # The runtime's requirements are enough for the STAC catalog too (pystac, after process()).
    catalog = json.loads(s3.get_object(Bucket=bucket, Key="out/catalog.json")["Body"].read())
    assert (catalog["type"], catalog["stac_version"]) == ("Catalog", "1.1.0")


def test_the_generated_gitignore_covers_the_run_output_folders(tmp_path: Path) -> None:
    # The README's mode comparisons write out-inprocess/, out-container/...: never to commit.
    new("my_ndvi", "--dir", str(tmp_path))
    ignored = (tmp_path / "my_ndvi" / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert {"out/", "out-*/", "hook-work/", ".mypy_cache/", ".ruff_cache/"} <= set(ignored)
