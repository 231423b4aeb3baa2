"""The runtime's start-up path stays light: no docker, jinja2, moto, tqdm or test helpers.

tqdm is imported only when a progress bar is actually shown (stderr a terminal).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

HELLO_WORLD = Path(__file__).resolve().parent.parent / "examples" / "hello_world"

HEAVY = [
    "docker",
    "jinja2",
    "moto",
    "werkzeug",
    "flask",
    "pytest",
    "_pytest",
    "tqdm",
    "fastapi",
    "starlette",
    "uvicorn",
    "odata_query",
    "sly",
    "requests",
    "distributed",
    "dask",
    "dask_gateway",
    "playwright",
    "hera",
    "yaml",
    "pystac",  # the STAC catalog: imported after process() only (tests/test_catalog.py)
    "jsonschema",
]
OURS = [
    "hook_processor.harness",
    "hook_processor.s3server",
    "hook_processor.testing",
    "hook_processor.scaffold",
    "hook_processor.container",
    "hook_processor.describe",
    "hook_processor.service",
    "hook_processor.export",
    "hook_processor._cli_export",
]

PROBE = """
import json, sys
from hook_processor.cli import main
try:
    main(["exec", "--project", sys.argv[1]])
except SystemExit as exit:
    code = exit.code
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {heavy} or m in {ours})
print(json.dumps({{"code": code, "loaded": loaded}}))
"""


def _probe_env(tmp_path: Path) -> dict[str, str]:
    """An exec's options whose staging fails at once: its input is behind a closed port."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOOK_WORK_DIR": str(tmp_path / "w"),
        "HOOK_S3_MAX_ATTEMPTS": "1",
        "SOURCE_S3_ENDPOINT_URL": "http://127.0.0.1:9",
        "SOURCE_S3_PATH": "s3://inb/x/",
        "OUTPUT_S3_PATH": "s3://out/y",
        "S3_ACCESS_KEY": "a",
        "S3_SECRET_KEY": "b",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def _exec_probe(tmp_path: Path, heavy: set[str], **env: str) -> dict[str, Any]:
    """``exec`` up to its first S3 request (to a closed port): what of ``heavy`` it loaded."""
    probe = PROBE.format(heavy=heavy, ours=set(OURS))
    completed = subprocess.run(
        [sys.executable, "-c", probe, str(HELLO_WORLD)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        env={**_probe_env(tmp_path), **env},
    )
    report: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["code"] == 3, completed.stderr  # the staging failed: the path was walked
    return report


def test_exec_path_imports_no_heavy_module(tmp_path: Path) -> None:
    # A full exec up to the first S3 request (to a closed port): runtime, storage and boto3 load.
    assert _exec_probe(tmp_path, set(HEAVY))["loaded"] == []


@pytest.mark.parametrize(
    ("engine", "loaded"), [("lean", []), ("boto3", []), ("obstore", ["obstore"])]
)
def test_obstore_is_imported_only_when_its_engine_is_made(
    tmp_path: Path, engine: str, loaded: list[str]
) -> None:
    report = _exec_probe(tmp_path, {"obstore"}, HOOK_S3_ENGINE=engine)
    assert sorted({m.split(".")[0] for m in report["loaded"]}) == loaded


@pytest.mark.parametrize(
    ("engine", "loaded"), [("lean", []), ("obstore", []), ("boto3", ["boto3", "s3transfer"])]
)
def test_boto3_waits_for_its_first_use_with_the_lean_and_obstore_engines(
    tmp_path: Path, engine: str, loaded: list[str]
) -> None:
    # Up to the first data request (the listing, to a closed port) nothing needs the boto3
    # client, whose import and model loading cost ~0.2 s of exec's start (BENCHMARKS.md).
    report = _exec_probe(
        tmp_path,
        {"boto3", "s3transfer"},
        HOOK_S3_ENGINE=engine,
        SOURCE_S3_ACCESS_KEY="a",  # keys given: no credential chain to resolve with botocore
        SOURCE_S3_SECRET_KEY="b",
    )
    assert sorted({m.split(".")[0] for m in report["loaded"]}) == loaded


OUT = "results/run1/example.data"
MANIFEST = "results/run1/_manifest.json"
ROUND_TRIP_PROBE = """
import json, sys
from hook_processor import _console
sys.argv = ["hook-processor", "exec", sys.argv[1]]
try:
    _console.main()
except SystemExit as exit:
    code = exit.code
loaded = sorted({m.split(".")[0] for m in sys.modules} & {"boto3", "s3transfer"})
print(json.dumps({"code": code, "loaded": loaded}))
"""


@pytest.mark.parametrize("engine", ["lean", "obstore"])
def test_a_private_round_trip_never_makes_the_boto3_client(
    s3_server: Any, s3: Any, tmp_path: Path, engine: str
) -> None:
    # A large input (its HEAD, ranged GETs) and a large output (a multipart upload), the
    # claim's probe and lease: with endpoint and keys, every call of a PRIVATE run goes by the
    # engine's own requests, and boto3's import and client (~0.37 s of CPU, ~30 MB, measured by
    # hand) are spared.
    from exec_helpers import private_env

    bucket = f"rt-{engine}"
    s3.create_bucket(Bucket=bucket)
    body = b"sentinel line\n" * (20 * 1024 * 1024 // 14)  # > 16 MiB: multipart both ways
    s3.put_object(Bucket=bucket, Key="dedl_hello_world/input_file_location/example.data", Body=body)
    env = private_env(s3_server, bucket, bucket, tmp_path / "w", HOOK_S3_ENGINE=engine)
    env.update(PATH="/usr/bin:/bin", AWS_EC2_METADATA_DISABLED="true")
    completed = subprocess.run(
        [sys.executable, "-c", ROUND_TRIP_PROBE, str(HELLO_WORLD)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        env=env,
    )
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report == {"code": 0, "loaded": []}, completed.stderr[-3000:]
    assert s3.get_object(Bucket=bucket, Key=OUT)["Body"].read() == body.upper()
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=MANIFEST)["Body"].read())
    assert OUT in [f["key"] for f in manifest["files"]]


CONSOLE_PROBE = """
import json, sys
from hook_processor import _console
sys.argv = ["hook-processor", *sys.argv[1:]]
try:
    _console.main()
except SystemExit as exit:
    code = exit.code
print(json.dumps({"code": code, "click": "click" in sys.modules}))
"""


@pytest.mark.parametrize(
    ("args", "code", "click"),
    [
        (["exec", "--project", "{hello}"], 3, False),
        (["exec", "{hello}", "-o", "workflow=dedl_hello_world"], 3, False),
        (["exec", "--project={hello}", "--option", "workflow=dedl_hello_world"], 3, False),
        (["exec", "{hello}", "--option", "no-equals-sign"], 2, True),  # click says what is wrong
        (["exec", "{hello}", "--bogus"], 2, True),
        (["exec", "{hello}", "{hello}/.."], 2, True),  # two folders: click's usage error
    ],
)
def test_the_console_script_runs_a_plain_exec_without_click(
    tmp_path: Path, args: list[str], code: int, click: bool
) -> None:
    # The container's entrypoint starts once per item: click costs ~30 ms of it. Any command
    # line the fast path does not take goes to click, which says what is wrong as before.
    argv = [a.format(hello=HELLO_WORLD) for a in args]
    completed = subprocess.run(
        [sys.executable, "-c", CONSOLE_PROBE, *argv],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        env=_probe_env(tmp_path),
    )
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert (report["code"], report["click"]) == (code, click), completed.stderr
    if code == 2:
        assert "Error:" in completed.stderr or "Usage:" in completed.stderr


def test_the_data_plane_imports_nothing_of_a_run_and_options_no_data_plane() -> None:
    data_plane = (
        "import sys\n"
        "import hook_processor._s3.engine, hook_processor._s3.lean, hook_processor._s3.boto\n"
        "import hook_processor._s3.transfer, hook_processor._s3.download\n"
        "import hook_processor._s3.upload, hook_processor._s3.sigv4\n"
        "import hook_processor._s3.obstore_engine\n"
        "assert 'obstore' not in sys.modules  # loaded when an obstore engine is made\n"
        "run = {'hook_processor.context', 'hook_processor.runtime', 'hook_processor.options',\n"
        "       'hook_processor.storage', 'hook_processor.loader'} & set(sys.modules)\n"
        "assert not run, run\n"
    )
    options = (
        "import sys\n"
        "from hook_processor.options import OptionSources, load_config\n"
        "env = {'INPUT_S3_PATH': 's3://inb/x/', 's3_bucket': 'outb', 'S3_ACCESS_KEY': 'a',\n"
        "       'S3_SECRET_KEY': 'b'}\n"
        "assert load_config(OptionSources(env=env)).input_location == ('inb', 'x/')\n"
        "plane = [m for m in sys.modules if m.startswith('hook_processor._s3.')\n"
        "         or m in ('hook_processor._s3', 'hook_processor.storage')]\n"
        "assert not plane, plane\n"
    )
    for code in (data_plane, options):
        subprocess.run([sys.executable, "-c", code], check=True)


SERVE_PROBE = """
import json, sys, threading
from pathlib import Path
from hook_processor.service import server

stop = threading.Event()
settings = server.ServeSettings(projects=[Path(sys.argv[1])], port=0, data_dir=Path(sys.argv[2]))
code = server.serve(settings, on_started=lambda started: stop.set(), stop=stop)
cluster = sorted(m for m in sys.modules if m.split(".")[0] in {"distributed", "dask_gateway"})
print(json.dumps({"code": code, "loaded": cluster}))
"""


def test_serve_with_the_local_executor_imports_no_dask(tmp_path: Path) -> None:
    # serve --executor local (the default) started and stopped: distributed is the dask
    # executor's alone (hook-processor[dask]).
    completed = subprocess.run(
        [sys.executable, "-c", SERVE_PROBE, str(HELLO_WORLD), str(tmp_path / "serve")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report == {"code": 0, "loaded": []}


def test_hera_and_yaml_are_imported_only_by_the_argo_export() -> None:
    import ast

    package = HELLO_WORLD.parent.parent / "hook_processor"
    importers = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            if any(n.split(".")[0] in ("hera", "yaml") for n in names):
                importers.add(path.relative_to(package).as_posix())
    assert importers == {"export/argo.py", "_cli_export.py"}
    # Listing the commands (every lazy command module loads) and describe load neither; the
    # export loads both (so the probe sees them when they are there).
    probe = (
        "import sys, contextlib, io\n"
        "from hook_processor.cli import main\n"
        "for args in (['--help'], ['describe', sys.argv[1]], ['export', 'argo', sys.argv[1]]):\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        try:\n"
        "            main(args)\n"
        "        except SystemExit as exit:\n"
        "            assert not exit.code, (args, exit.code)\n"
        "    print(sorted({m.split('.')[0] for m in sys.modules} & {'hera', 'yaml'}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(HELLO_WORLD)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[]", "[]", "['hera', 'yaml']"]
