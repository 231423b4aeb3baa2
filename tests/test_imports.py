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
]
OURS = [
    "hook_processor.harness",
    "hook_processor.s3server",
    "hook_processor.testing",
    "hook_processor.scaffold",
    "hook_processor.container",
    "hook_processor.describe",
    "hook_processor.service",
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


def _exec_probe(tmp_path: Path, heavy: set[str], **env: str) -> dict[str, Any]:
    """``exec`` up to its first S3 request (to a closed port): what of ``heavy`` it loaded."""
    probe = PROBE.format(heavy=heavy, ours=set(OURS))
    completed = subprocess.run(
        [sys.executable, "-c", probe, str(HELLO_WORLD)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        env={
            "PATH": "/usr/bin:/bin",
            "HOOK_WORK_DIR": str(tmp_path / "w"),
            "HOOK_S3_MAX_ATTEMPTS": "1",
            "SOURCE_S3_ENDPOINT_URL": "http://127.0.0.1:9",
            "SOURCE_S3_PATH": "s3://inb/x/",
            "OUTPUT_S3_PATH": "s3://out/y",
            "S3_ACCESS_KEY": "a",
            "S3_SECRET_KEY": "b",
            "AWS_EC2_METADATA_DISABLED": "true",
            **env,
        },
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
