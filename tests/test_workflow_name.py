"""An order whose WorkflowName is not the project's name is flagged; the project's name is recorded.

The result's and the manifest's WorkflowName is the project's ``[tool.hook-processor]`` name (the
code that ran); the order's is kept as OrderWorkflowName / order_workflow_name.
"""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from seed_order import seed_order
from test_harness import HELLO_WORLD, SAMPLE, write_project
from test_unknown_options import exec_child

from hook_processor.cli import main

UPPER = """
def process(input_dir, output_dir):
    for path in input_dir.iterdir():
        (output_dir / path.name).write_text(path.read_text().upper())
"""
WARNING = (
    "the order's WorkflowName 'dedl_hello_world' is not this project's name 'ndvi_s2' "
    "([tool.hook-processor] name); the result and the manifest record WorkflowName 'ndvi_s2' "
    "and keep the order's as OrderWorkflowName"
)


def order_file(tmp_path: Path) -> Path:
    path = tmp_path / "order.json"
    path.write_text(json.dumps(seed_order("CANARY-55e1-SECRET")))
    return path


def test_exec_flags_the_order_of_another_workflow(
    private_exec_env, s3_server, s3, bucket, tmp_path: Path
) -> None:
    project = write_project(tmp_path, UPPER, name="ndvi_s2")
    s3.put_object(Bucket=bucket, Key="in/example.data", Body=b"abc")
    env = {
        **private_exec_env,
        "HOOK_WORKFLOW_NAME": "dedl_hello_world",
    }
    child = exec_child(env, "--project", str(project))

    assert child.returncode == 0, child.stderr
    assert child.stderr.count(WARNING) == 1
    result = json.loads((tmp_path / "work" / "result.json").read_text())
    assert (result["WorkflowName"], result["OrderWorkflowName"]) == ("ndvi_s2", "dedl_hello_world")
    manifest = json.loads(s3.get_object(Bucket=bucket, Key="out/_manifest.json")["Body"].read())
    assert (manifest["workflow_name"], manifest["order_workflow_name"]) == (
        "ndvi_s2",
        "dedl_hello_world",
    )


def test_run_flags_it_once_and_records_the_project_name(tmp_path: Path) -> None:
    project = write_project(tmp_path, UPPER, name="ndvi_s2")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main,
        ["run", str(project), "-i", str(SAMPLE), "--output", str(out)]
        + ["--options-file", str(order_file(tmp_path))],
        catch_exceptions=False,
    )

    assert result.exit_code == 0, result.stderr
    assert (result.stdout + result.stderr).count("is not this project's name") == 1
    assert WARNING in result.stderr
    saved = json.loads((out / ".hook-processor-run.json").read_text())
    assert (saved["WorkflowName"], saved["OrderWorkflowName"]) == ("ndvi_s2", "dedl_hello_world")
    manifest = json.loads((out / "_manifest.json").read_text())
    assert (manifest["workflow_name"], manifest["order_workflow_name"]) == (
        "ndvi_s2",
        "dedl_hello_world",
    )


def test_a_matching_order_is_not_flagged(run_processor, tmp_path: Path) -> None:
    run = run_processor(HELLO_WORLD, inputs=SAMPLE, options_file=order_file(tmp_path))
    assert run.exit_code == 0, run.logs
    assert "is not this project's name" not in run.logs
    assert run.result["WorkflowName"] == run.result["OrderWorkflowName"] == "dedl_hello_world"
    assert run.manifest is not None and run.manifest["workflow_name"] == "dedl_hello_world"
