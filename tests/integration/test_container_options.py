"""`run --mode container` names each unknown option once, as the other modes do (issue 10, item 4).

The harness hands the names of its options file and --option to the runtime in the container
(HOOK_GIVEN_OPTIONS); the runtime, which knows the processor's options, reports them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from container_helpers import SAMPLE, cli, copy_project
from test_unknown_options import S3_BUCET, misspelled_seed_order

pytestmark = pytest.mark.container


def test_container_run_names_the_misspelled_option_once(base_image: Any, tmp_path: Path) -> None:
    project = copy_project(tmp_path, "hp_options_probe")
    built = cli("build", str(project), "--base-image", base_image.tag)
    assert built.returncode == 0, built.stderr
    out = tmp_path / "out"
    ran = cli(
        "run",
        str(project),
        "--input",
        str(SAMPLE),
        "--output",
        str(out),
        "--options-file",
        str(misspelled_seed_order(tmp_path)),
        "-o",
        "foo=1",
        "--mode",
        "container",
    )
    assert ran.returncode == 0, ran.stderr
    assert (ran.stdout + ran.stderr).count("s3_bucet") == 1
    assert f"{S3_BUCET}: ignored" in ran.stderr
    assert "unknown option 'foo' (from --option): ignored" in ran.stderr
    saved = json.loads((out / ".hook-processor-run.json").read_text())
    assert [u["Name"] for u in saved["UnknownOptions"]] == ["s3_bucet", "foo"]

    strict = cli(
        "run",
        str(project),
        "--input",
        str(SAMPLE),
        "--output",
        str(tmp_path / "strict"),
        "-o",
        "foo=1",
        "-o",
        "HOOK_STRICT_OPTIONS=1",
        "--mode",
        "container",
    )
    assert strict.returncode == 2, strict.stderr
    assert "HOOK_STRICT_OPTIONS=1 refuses unknown names" in strict.stderr
