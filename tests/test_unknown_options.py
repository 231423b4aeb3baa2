"""Unknown option names are named once per run, in every mode, with the nearest known name.

The runtime reports them (exec); ``hook-processor run`` hands the names of its options file and
--option to the runtime (HOOK_GIVEN_OPTIONS), since the runtime gets the values as environment
variables, where an unknown name no longer stands out. HOOK_STRICT_OPTIONS=1 makes them errors.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import Field
from seed_order import seed_order
from test_harness import HELLO_WORLD, SAMPLE, write_project

from hook_processor.cli import main
from hook_processor.errors import OptionsError
from hook_processor.options import Options, OptionSources, load_config

CANARY = "CANARY-77aa01-SECRET"
VALID = {
    "INPUT_S3_PATH": "s3://inb/data/",
    "S3_BUCKET": "out",
    "S3_ACCESS_KEY": "AK",
    "S3_SECRET_KEY": CANARY,
}
S3_BUCET = "unknown option 's3_bucet' (from the options file; did you mean 's3_bucket'?)"


class Ndvi(Options):
    resolution: str = Field("10m", description="Output resolution")
    timespan: int = Field(7, ge=1, description="Days")


def misspelled_seed_order(tmp_path: Path) -> Path:
    """The seed's order body with its output bucket given as s3_bucet instead of s3_bucket."""
    order = seed_order(CANARY)
    order["WorkflowOptions"] = [
        o for o in order["WorkflowOptions"] if o["Name"] != "output_s3_path"
    ] + [{"Name": "s3_bucet", "Value": "results"}, {"Name": "s3_prefix", "Value": "hello"}]
    path = tmp_path / "order.json"
    path.write_text(json.dumps(order))
    return path


def run_cli(*args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, ["run", *args], env=env, catch_exceptions=False)


def exec_child(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.upper().startswith(("AWS_", "HOOK_"))}
    return subprocess.run(
        [sys.executable, "-m", "hook_processor", "exec", *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_each_unknown_name_gets_the_nearest_known_one() -> None:
    config = load_config(
        OptionSources(
            env={**VALID, "HOOK_CONCURENCY": "4", "HOOK_DATA_ID": "Custom Hook", "TIMESPN": "3"},
            cli={"timespn": "3", "resolutoin": "20m", "source_s3_pat": "x", "zzz": "1"},
        ),
        Ndvi,
    )
    assert [str(u) for u in config.unknown_options] == [
        "unknown option 'timespn' (from --option; did you mean 'timespan'?)",
        "unknown option 'resolutoin' (from --option; did you mean 'resolution'?)",
        "unknown option 'source_s3_pat' (from --option; did you mean 'source_s3_path'?)",
        "unknown option 'zzz' (from --option)",
        # The environment holds everything: only a HOOK_* near-miss of a setting is named.
        "unknown setting 'HOOK_CONCURENCY' (from the environment; "
        "did you mean 'HOOK_CONCURRENCY'?)",
    ]


def test_unknown_names_are_inside_the_error_when_validation_fails(tmp_path: Path) -> None:
    with pytest.raises(OptionsError) as caught:
        load_config(
            OptionSources(
                env={"INPUT_S3_PATH": "s3://inb/x/"}, file=misspelled_seed_order(tmp_path)
            )
        )
    lines = str(caught.value).splitlines()
    assert "  - s3_bucket (or output_s3_path): required with output_storage=PRIVATE" in "\n".join(
        lines
    )
    assert f"  - {S3_BUCET}" in lines
    assert CANARY not in str(caught.value)


def test_strict_options_makes_them_errors_and_keeps_injected_names_silent() -> None:
    cli = {"brand": "dedl", "platform": "x", "version": "1"}
    assert load_config(OptionSources(env={**VALID, "HOOK_STRICT_OPTIONS": "1"}, cli=cli))
    with pytest.raises(OptionsError) as caught:
        load_config(
            OptionSources(env={**VALID, "HOOK_STRICT_OPTIONS": "1"}, cli={**cli, "foo": "1"})
        )
    assert caught.value.exit_code == 2
    message = str(caught.value)
    assert "  - unknown option 'foo' (from --option)" in message
    assert "HOOK_STRICT_OPTIONS=1 refuses unknown names" in message
    assert "brand" not in message and "'platform'" not in message


def test_exec_names_both_the_failing_option_and_the_unknown_one(tmp_path: Path) -> None:
    env = {"INPUT_S3_PATH": "s3://inb/x/", "HOOK_WORK_DIR": str(tmp_path / "work")}
    child = exec_child(
        env, "--project", str(HELLO_WORLD), "--options-file", str(misspelled_seed_order(tmp_path))
    )
    assert child.returncode == 2, child.stderr
    assert "s3_bucket (or output_s3_path): required" in child.stderr
    assert child.stderr.count("'s3_bucet'") == 1  # in the error, no separate warning
    assert S3_BUCET in child.stderr
    result = json.loads((tmp_path / "work" / "result.json").read_text())
    assert S3_BUCET in result["StatusMessage"]
    assert CANARY not in child.stderr + json.dumps(result)


def test_exec_strict_options_exit_2_before_any_transfer(tmp_path: Path) -> None:
    env = {**VALID, "HOOK_WORK_DIR": str(tmp_path / "work"), "HOOK_STRICT_OPTIONS": "1"}
    child = exec_child(env, "--project", str(HELLO_WORLD), "--option", "foo=1")
    assert child.returncode == 2
    assert "unknown option 'foo' (from --option)" in child.stderr
    assert "HOOK_STRICT_OPTIONS=1 refuses unknown names" in child.stderr
    assert not (tmp_path / "work" / "input").exists()


def test_exec_warns_once_and_runs_when_valid(
    private_exec_env, s3_server, s3, bucket, tmp_path: Path
) -> None:
    s3.put_object(Bucket=bucket, Key="in/example.data", Body=b"abc")
    env = dict(private_exec_env)
    child = exec_child(env, "--project", str(HELLO_WORLD), "-o", "s3_prefx=elsewhere")
    assert child.returncode == 0, child.stderr
    warning = "unknown option 's3_prefx' (from --option; did you mean 's3_prefix'?): ignored"
    assert child.stderr.count("s3_prefx") == 1 and warning in child.stderr
    assert s3.get_object(Bucket=bucket, Key="out/example.data")["Body"].read() == b"ABC"
    result = json.loads((tmp_path / "work" / "result.json").read_text())
    assert [u["Name"] for u in result["UnknownOptions"]] == ["s3_prefx"]
    assert result["UnknownOptions"][0]["Suggestion"] == "s3_prefix"


@pytest.mark.parametrize("mode", ["inprocess", "subprocess"])
def test_run_with_the_misspelled_seed_order_names_it_once(tmp_path: Path, mode: str) -> None:
    out = tmp_path / "out"
    result = run_cli(
        str(HELLO_WORLD),
        "-i",
        str(SAMPLE),
        "--output",
        str(out),
        "--options-file",
        str(misspelled_seed_order(tmp_path)),
        "-o",
        "foo=1",
        "--mode",
        mode,
    )
    assert result.exit_code == 0, result.stderr
    both = result.stdout + result.stderr
    assert both.count("s3_bucet") == 1 and f"{S3_BUCET}: ignored" in result.stderr
    assert both.count("'foo'") == 1 and "unknown option 'foo' (from --option)" in result.stderr
    saved = json.loads((out / ".hook-processor-run.json").read_text())
    assert [u["Name"] for u in saved["UnknownOptions"]] == ["s3_bucet", "foo"]
    assert (out / "example.data").read_text() == (SAMPLE / "example.data").read_text().upper()


def test_run_strict_options_exit_2_and_a_misspelled_setting_in_option(tmp_path: Path) -> None:
    result = run_cli(
        str(HELLO_WORLD),
        "-i",
        str(SAMPLE),
        "--output",
        str(tmp_path / "out"),
        "-o",
        "HOOK_CONCURENCY=3",
        "-o",
        "HOOK_CONCURRENCY=3",  # a known setting, given through --option as run allows
        env={"HOOK_STRICT_OPTIONS": "1"},
    )
    assert result.exit_code == 2
    assert (
        "unknown option 'HOOK_CONCURENCY' (from --option; did you mean 'HOOK_CONCURRENCY'?)"
        in result.stderr
    )
    assert "'HOOK_CONCURRENCY' (" not in result.stderr
    assert "HOOK_STRICT_OPTIONS=1 refuses unknown names" in result.stderr


def test_plugin_warns_and_the_run_log_names_it(tmp_path: Path, run_processor) -> None:
    from hook_processor.testing import UnknownOptionWarning

    project = write_project(
        tmp_path,
        """
        from pydantic import Field
        from hook_processor import Options

        class Case(Options):
            text_case: str = Field("upper")

        def process(input_dir, output_dir, options: Case):
            (output_dir / "case.txt").write_text(options.text_case)
        """,
    )
    with pytest.warns(UnknownOptionWarning) as warned:
        run = run_processor(project, inputs={"a": b"a"}, options={"text_cas": "lower"})

    message = (
        "unknown option 'text_cas' (from run_processor(options=...); did you mean 'text_case'?)"
    )
    assert [str(w.message) for w in warned] == [message]
    assert warned[0].filename == __file__  # points at the test's own line
    assert run.exit_code == 0 and run.outputs == {"case.txt": b"upper"}
    assert run.unknown_options == (message,)
    assert run.logs.count("text_cas'") == 1 and message in run.logs
