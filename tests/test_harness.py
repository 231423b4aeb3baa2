"""The local harness: embedded S3, inputs, the order body, modes, outputs, failures; the plugin."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import urllib.parse
import uuid
from pathlib import Path

import pytest
from seed_order import seed_order

from hook_processor import harness
from hook_processor.errors import ExitCode, OptionsError, StagingError
from hook_processor.s3server import S3Server

REPO_ROOT = Path(__file__).resolve().parent.parent
HELLO_WORLD = REPO_ROOT / "examples" / "hello_world"
SAMPLE = HELLO_WORLD / "sample" / "input"
CANARY = "CANARY-3d9a1c-SECRET"

SEED_ORDER = seed_order(CANARY)
SEED_REPLACED = [o["Name"] for o in SEED_ORDER["WorkflowOptions"] if o["Name"] != "output_storage"]


def write_project(root: Path, body: str, name: str = "proj") -> Path:
    """A processor project whose module has a unique name (in-process imports are cached)."""
    project = root / name
    project.mkdir()
    module = f"proc_{uuid.uuid4().hex[:8]}"
    (project / f"{module}.py").write_text(textwrap.dedent(body))
    (project / "pyproject.toml").write_text(
        f'[tool.hook-processor]\nname = "{name}"\nentrypoint = "{module}:process"\n'
    )
    return project


def refuses_connections(endpoint_url: str) -> bool:
    port = urllib.parse.urlsplit(endpoint_url).port
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return True
    return False


def catalog_of(*products: str) -> set[str]:
    """The STAC files the runtime publishes beside the products (one item each)."""
    return {"catalog.json", *(f"_stac/{p}.json" for p in products)}


def request(tmp_path: Path, **kwargs) -> harness.RunRequest:
    kwargs.setdefault("project_dir", HELLO_WORLD)
    kwargs.setdefault("inputs", [SAMPLE])
    kwargs.setdefault("log_stream", sys.stderr)
    kwargs.setdefault("environ", {})
    return harness.RunRequest(output_dir=tmp_path / "out", **kwargs)


def test_hello_world_on_its_own_embedded_server(tmp_path) -> None:
    notes: list[str] = []
    outcome = harness.run(request(tmp_path, notify=notes.append))

    assert outcome.exit_code == 0, outcome.logs
    assert outcome.status == "completed" and outcome.published
    expected = (SAMPLE / "example.data").read_text().upper()
    assert (tmp_path / "out" / "example.data").read_text() == expected
    assert set(outcome.files) == {"example.data", *catalog_of("example.data")}
    manifest = json.loads(outcome.manifest.read_text())
    assert sorted(f["key"].split("/", 1)[1] for f in manifest["files"]) == sorted(outcome.files)
    saved = json.loads((tmp_path / "out" / harness.RESULT_FILE).read_text())
    assert saved == outcome.result and saved["Status"] == "completed"
    assert "upper-cased example.data" in outcome.logs
    assert any(n.startswith("embedded S3 server at http://127.0.0.1:") for n in notes)
    assert refuses_connections(outcome.endpoint_url)  # stopped


def test_seed_order_body_replaced_and_reported_other_options_kept(tmp_path, run_processor) -> None:
    project = write_project(
        tmp_path,
        """
        from hook_processor import Context, Options

        class Greeting(Options):
            greeting: str = "hello"

        def process(input_dir, output_dir, options: Greeting, context: Context):
            text = (input_dir / "example.data").read_text()
            (output_dir / "out.txt").write_text(
                f"{options.greeting} {context.identifiers[0]} {context.workflow_name} {text}")
    """,
    )
    order = json.loads(json.dumps(SEED_ORDER))
    order["WorkflowOptions"].append({"Name": "greeting", "Value": "bonjour"})
    (tmp_path / "order.json").write_text(json.dumps(order))

    run = run_processor(
        project, inputs={"example.data": b"data"}, options_file=tmp_path / "order.json"
    )

    assert run.exit_code == 0, run.logs
    assert run.outputs == {"out.txt": b"bonjour Custom Hook dedl_hello_world data"}
    assert sorted(run.replaced_options) == sorted(SEED_REPLACED)
    assert run.result["OrderName"] == "Tutorial dedl_hello_world - user"
    assert run.result["IdentifierList"] == ["Custom Hook"]
    assert CANARY not in run.logs + json.dumps(run.result)


def test_temporary_zip_fetched_through_its_link_and_unpacked(tmp_path) -> None:
    outcome = harness.run(request(tmp_path, output_storage="TEMPORARY"))

    assert outcome.exit_code == 0, outcome.logs
    assert outcome.result["OutputStorage"] == "TEMPORARY"
    assert outcome.archive is not None and outcome.archive.name == outcome.result["ProcessedName"]
    assert outcome.archive.stat().st_size == outcome.result["ProcessedSize"]
    assert set(outcome.files) == {"example.data", *catalog_of("example.data")}
    assert outcome.manifest is None


def _comparable(result: dict) -> dict:
    """The result without what differs between two runs: timings, dates, links, run prefixes."""
    data = {
        k: v
        for k, v in result.items()
        if k not in ("Timings", "StartedDate", "CompletedDate", "DownloadLink", "ProcessedName")
    }
    text = json.dumps(data, sort_keys=True)
    text = re.sub(r"\d{8}T\d{6}-[0-9a-f]{6}", "<run>", text)
    text = re.sub(r'"DownloadLink": "[^"]*"', '"DownloadLink": "<link>"', text)
    text = re.sub(r"\d{8}_local_[\w-]+\.zip", "<zip>", text)
    data = json.loads(text)
    for product in data["Products"]:
        if product["Name"] == "<zip>" or product["Name"].startswith("_stac/"):
            # A zip holds its files' modification times; an item its run's time (whose
            # milliseconds may be 0, a shorter text: its size too).
            product.pop("Sha256")
        if product["Name"].startswith("_stac/"):
            product.pop("Size")
            data["Output"].pop("Bytes", None)
        if product["Name"] == "<zip>":
            # ... and the run's time compresses to a byte more or less: the zip's size too.
            product.pop("Size")
            data.pop("ProcessedSize")
            data["Output"].pop("Bytes", None)
    return data


@pytest.mark.parametrize("storage", ["PRIVATE", "TEMPORARY"])
def test_inprocess_and_subprocess_give_the_same_result(run_processor, storage) -> None:
    inputs = {"example.data": b"same\n", "sub/x.txt": b"x"}
    a = run_processor(HELLO_WORLD, inputs=inputs, output_storage=storage, mode="inprocess")
    b = run_processor(HELLO_WORLD, inputs=inputs, output_storage=storage, mode="subprocess")

    assert a.exit_code == b.exit_code == 0, b.logs
    assert _comparable(a.result) == _comparable(b.result)
    assert a.outputs == b.outputs == {"example.data": b"SAME\n", "sub/x.txt": b"X"}
    assert "upper-cased example.data" in b.logs


def test_failing_processor_exit_4_partial_output_kept_same_in_both_modes(
    tmp_path, run_processor
) -> None:
    project = write_project(
        tmp_path,
        """
        def process(input_dir, output_dir):
            (output_dir / "partial.txt").write_text("half")
            raise ValueError("cannot finish")
    """,
    )
    runs = [run_processor(project, inputs={"a": b"a"}, mode=m) for m in ("inprocess", "subprocess")]

    for run in runs:
        assert run.exit_code == ExitCode.PROCESS_FAILED
        assert run.status == "failed" and not run.published
        assert run.status_message == "process() raised ValueError: cannot finish"
        assert run.outputs == {"partial.txt": b"half"}
        assert run.manifest is None
    assert _comparable(runs[0].result) == _comparable(runs[1].result)


def test_server_is_stopped_after_a_failed_run(tmp_path) -> None:
    project = write_project(
        tmp_path,
        """
        def process(input_dir, output_dir):
            raise RuntimeError("no")
    """,
    )
    outcome = harness.run(request(tmp_path, project_dir=project))
    assert outcome.exit_code == ExitCode.PROCESS_FAILED
    assert refuses_connections(outcome.endpoint_url)


def test_keep_server_leaves_it_browsable_until_stopped(tmp_path) -> None:
    outcome = harness.run(request(tmp_path, keep_server=True))
    try:
        assert outcome.server is not None
        listed = outcome.server.client().list_objects_v2(Bucket=harness.OUTPUT_BUCKET)
        assert any(o["Key"].endswith("/example.data") for o in listed["Contents"])
    finally:
        outcome.stop_server()
    assert refuses_connections(outcome.endpoint_url)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"project_dir": Path("/nonexistent/project")},
            "project folder /nonexistent/project does not exist",
        ),
        (
            {"inputs": [Path("/nonexistent/input")]},
            "--input /nonexistent/input: no such file or folder",
        ),
        ({"inputs": []}, "--input: give the files or folders to process"),
        ({"mode": "teleport"}, "--mode teleport: unknown mode"),
    ],
)
def test_bad_arguments_one_message_before_anything_starts(tmp_path, kwargs, message) -> None:
    with pytest.raises(OptionsError) as info:
        harness.run(request(tmp_path, **kwargs))
    assert str(info.value).startswith(message)
    assert info.value.exit_code == ExitCode.BAD_OPTIONS
    assert not (tmp_path / "out").exists()


def test_project_without_entrypoint_is_refused(tmp_path) -> None:
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "pyproject.toml").write_text('[project]\nname = "x"\n')
    with pytest.raises(OptionsError, match=r"has no \[tool.hook-processor\] table"):
        harness.run(request(tmp_path, project_dir=tmp_path / "proj"))


def test_inputs_merged_and_conflicts_refused(tmp_path, run_processor) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "one.txt").write_text("1")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "one.txt").write_text("other")
    (tmp_path / "two.txt").write_text("2")

    run = run_processor(HELLO_WORLD, inputs=[tmp_path / "a", tmp_path / "two.txt"])
    assert run.outputs == {"one.txt": b"1", "two.txt": b"2"}

    with pytest.raises(OptionsError, match="two inputs give the file 'one.txt'"):
        run_processor(HELLO_WORLD, inputs=[tmp_path / "a", tmp_path / "b"])


def test_output_folder_with_foreign_files_refused_previous_run_replaced(
    tmp_path, s3_server
) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "precious.txt").write_text("keep")
    with pytest.raises(OptionsError, match="did not write"):
        harness.run(request(tmp_path, server=s3_server))
    assert (tmp_path / "out" / "precious.txt").read_text() == "keep"

    (tmp_path / "out" / "precious.txt").unlink()
    harness.run(request(tmp_path, server=s3_server, inputs={"old.txt": b"old"}))
    outcome = harness.run(request(tmp_path, server=s3_server, inputs={"new.txt": b"new"}))
    assert set(outcome.files) == {"new.txt", *catalog_of("new.txt")}


def test_file_added_after_a_run_is_refused_not_emptied(tmp_path, s3_server) -> None:
    # The earlier run's marker must not license deleting a file the user put there since.
    harness.run(request(tmp_path, server=s3_server, inputs={"old.txt": b"old"}))
    marker = tmp_path / "out" / ".hook-processor-run.json"
    before = marker.stat().st_mtime
    (tmp_path / "out" / "notes").mkdir()
    (tmp_path / "out" / "notes" / "mine.txt").write_text("keep")
    os.utime(tmp_path / "out" / "notes" / "mine.txt", (before + 5, before + 5))
    with pytest.raises(OptionsError, match=r"notes/mine\.txt.*did not write"):
        harness.run(request(tmp_path, server=s3_server, inputs={"new.txt": b"new"}))
    assert (tmp_path / "out" / "notes" / "mine.txt").read_text() == "keep"
    assert (tmp_path / "out" / "old.txt").is_file()


def test_user_endpoint_creates_nothing_and_uploads_where_options_say(
    tmp_path, s3_server, s3, bucket
) -> None:
    before = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    outcome = harness.run(
        request(
            tmp_path,
            endpoint=s3_server,
            inputs={"example.data": b"mine"},
            options={
                "input_s3_path": f"s3://{bucket}/in",
                "output_s3_path": f"s3://{bucket}/results/r1",
            },
        )
    )

    assert outcome.exit_code == 0, outcome.logs
    assert {b["Name"] for b in s3.list_buckets()["Buckets"]} == before
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == [
        "in/example.data",
        "results/r1/_manifest.json",
        "results/r1/_stac/example.data.json",
        "results/r1/catalog.json",
        "results/r1/example.data",
    ]
    assert (tmp_path / "out" / "example.data").read_bytes() == b"MINE"


def test_unreachable_user_endpoint_is_a_staging_failure(tmp_path) -> None:
    endpoint = S3Server("http://127.0.0.1:9", "a", "b")
    with pytest.raises(StagingError, match="could not upload the input .* on http://127.0.0.1:9"):
        harness.run(
            request(
                tmp_path,
                endpoint=endpoint,
                environ={"HOOK_S3_MAX_ATTEMPTS": "1"},
                options={
                    "input_s3_path": "s3://bkt/in/",
                    "s3_bucket": "bkt",
                },  # valid: checked first
            )
        )

    outcome = harness.run(
        request(
            tmp_path,
            endpoint=endpoint,
            inputs=[],
            options={
                "input_s3_path": "s3://bkt/in/",
                "s3_bucket": "bkt",
                "HOOK_S3_MAX_ATTEMPTS": "1",
            },
        )
    )
    assert outcome.exit_code == ExitCode.STAGING_FAILED
    assert "127.0.0.1:9" in outcome.result["StatusMessage"]


def test_subprocess_gets_only_a_containers_environment(tmp_path) -> None:
    project = write_project(
        tmp_path,
        """
        import json, os

        def process(input_dir, output_dir):
            (output_dir / "env.json").write_text(json.dumps(sorted(os.environ)))
    """,
    )
    environ = {
        "PATH": "/usr/bin:/bin",
        "HOME": "/home/dev",
        "LANG": "C.UTF-8",
        "AWS_ACCESS_KEY_ID": "dev-key",
        "AWS_PROFILE": "dev",
        "DEV_ONLY": "1",
        "HTTPS_PROXY": "http://proxy.invalid:3128",
        "SSL_CERT_FILE": "/etc/ssl/ca.pem",
        "HOOK_LOG_FORMAT": "json",
        "HOOK_WORK_DIR": "/ignored",
    }
    outcome = harness.run(
        request(
            tmp_path,
            project_dir=project,
            mode="subprocess",
            inputs={"a": b"a"},
            environ={**environ, "PATH": os.environ["PATH"]},
        )
    )

    assert outcome.exit_code == 0, outcome.logs
    names = set(json.loads(outcome.files["env.json"].read_text()))
    assert {
        "PATH",
        "HOME",
        "LANG",
        "HTTPS_PROXY",
        "NO_PROXY",
        "SSL_CERT_FILE",
        "HOOK_LOG_FORMAT",
        "INPUT_S3_PATH",
        "S3_BUCKET",
        "HOOK_WORK_DIR",
        "HOOK_TEMPORARY_S3_BUCKET",
    } <= names
    assert not names & {"AWS_ACCESS_KEY_ID", "AWS_PROFILE", "DEV_ONLY"}
    assert json.loads(outcome.logs.splitlines()[0])["level"] == "INFO"  # HOOK_* settings reach it


def module_level_process(input_dir: Path, output_dir: Path) -> None:
    for path in input_dir.iterdir():
        (output_dir / path.name).write_bytes(path.read_bytes()[::-1])


@pytest.mark.parametrize("mode", ["inprocess", "subprocess"])
def test_plugin_runs_a_bare_module_level_function(run_processor, mode) -> None:
    run = run_processor(module_level_process, inputs={"x.txt": b"abc"}, mode=mode)
    assert run.exit_code == 0, run.logs
    assert run.outputs == {"x.txt": b"cba"}


def test_plugin_runs_a_closure_in_process_only(run_processor) -> None:
    suffix = b"!"

    def process(input_dir, output_dir):
        (output_dir / "y").write_bytes((input_dir / "y").read_bytes() + suffix)

    assert run_processor(process, inputs={"y": b"y"}).outputs == {"y": b"y!"}
    with pytest.raises(ValueError, match="not a module-level function"):
        run_processor(process, inputs={"y": b"y"}, mode="subprocess")


def test_plugin_and_harness_imports_stay_light() -> None:
    code = (
        "import sys, hook_processor.testing\n"
        "heavy = {'moto', 'boto3', 'hook_processor.harness'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
        "import hook_processor.harness\n"
        "assert 'moto' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_example_tests_pass_standalone_with_only_the_plugin() -> None:
    """examples/hello_world has no conftest: the plugin (pytest11 entry point) is all it needs."""
    assert not list(HELLO_WORLD.rglob("conftest.py"))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error"],
        cwd=HELLO_WORLD,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert " passed" in done.stdout and "failed" not in done.stdout


def test_the_harness_caps_ranged_gets_on_its_own_moto_only(tmp_path: Path) -> None:
    # moto reads the whole object for every ranged GET: the harness's own server gets one range
    # per transfer thread; a developer's setting and an endpoint of their own are left alone.
    from types import SimpleNamespace

    from hook_processor import _harness_options

    server = SimpleNamespace(endpoint_url="http://127.0.0.1:1", access_key="a", secret_key="b")

    def env(environ: dict[str, str], scratch: bool) -> dict[str, str]:
        return _harness_options.run_env(environ, {}, {}, server, scratch, tmp_path, None, None)

    assert env({}, scratch=True)["HOOK_DOWNLOAD_RANGES"] == "16"
    assert env({"HOOK_DOWNLOAD_RANGES": "0"}, scratch=True)["HOOK_DOWNLOAD_RANGES"] == "0"
    assert "HOOK_DOWNLOAD_RANGES" not in env({}, scratch=False)
