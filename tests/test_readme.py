"""The README's walkthroughs run as they are written."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
README = REPO_ROOT / "README.md"
HELLO_WORLD = REPO_ROOT / "examples" / "hello_world"


def readme_block(heading: str, language: str = "bash") -> str:
    """The first ``language`` code block after the README heading ``heading``."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index(f"\n## {heading}\n") :]
    start = section.index(f"\n```{language}\n") + len(f"\n```{language}\n")
    return section[start : section.index("\n```\n", start) + 1]


def tool_path() -> str:
    """PATH with the folders of this interpreter's scripts (hook-processor, moto_server) first."""
    folders = [Path(sysconfig.get_path("scripts")), Path(sys.executable).parent]
    folders.append(Path(sys.base_prefix) / "bin")  # a venv on system site-packages: moto_server
    found = [
        str(f) for f in folders if (f / "hook-processor").exists() or (f / "moto_server").exists()
    ]
    return os.pathsep.join([*dict.fromkeys(found), os.environ.get("PATH", "/usr/bin:/bin")])


@contextlib.contextmanager
def port_5000_taken() -> Iterator[None]:
    """Port 5000 of 127.0.0.1 held by another server (one that never answers) during the block."""
    listener = socket.socket()
    try:
        listener.bind(("127.0.0.1", 5000))
        listener.listen()
    except OSError as exc:  # already held by someone else: just as good
        assert exc.errno == errno.EADDRINUSE, exc
    try:
        yield
    finally:
        listener.close()


def test_the_exec_walkthrough_runs_pasted_as_one_block(tmp_path: Path) -> None:
    block = readme_block("Run it with `hook-processor exec` against any S3 endpoint")
    checkout = tmp_path / "checkout"
    shutil.copytree(
        HELLO_WORLD,
        checkout / "examples" / "hello_world",
        ignore=shutil.ignore_patterns("__pycache__", "hook-work", "out"),
    )
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(("AWS_", "HOOK_"))}
    env.update(PATH=tool_path(), TMPDIR=str(tmp_path), AWS_EC2_METADATA_DISABLED="true")

    with port_5000_taken():
        child = subprocess.Popen(
            ["bash", "-e", "-o", "pipefail", "-c", block],
            cwd=checkout,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its moto_server too, so that nothing outlives the test
        )
        try:
            out, err = child.communicate(timeout=180)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)

    assert child.returncode == 0, f"stdout:\n{out}\nstderr:\n{err}"
    expected = (HELLO_WORLD / "sample" / "input" / "example.data").read_text().upper()
    assert out.endswith(expected), out
    assert '"Status": "completed"' in out
    assert "s3://results/hello/example.data" in out
    # the run's folder went under the temporary folder, not into the checkout
    assert sorted(p.name for p in checkout.iterdir()) == ["examples"]
    assert not (checkout / "examples" / "hello_world" / "hook-work").exists()


# --- what the README says about `run` is what `run` does -------------------------------------


def readme_text() -> str:
    return " ".join(README.read_text(encoding="utf-8").split())


def run_cli(*args: str) -> Any:
    from click.testing import CliRunner

    from hook_processor.cli import main

    sample = HELLO_WORLD / "sample" / "input"
    return CliRunner().invoke(main, ["run", str(HELLO_WORLD), "--input", str(sample), *args])


def test_temporary_products_carry_both_location_and_download_link(tmp_path: Path) -> None:
    result = run_cli("--output", str(tmp_path / "out"), "--output-storage", "TEMPORARY", "--json")
    assert result.exit_code == 0, result.output
    (product,) = json.loads(result.stdout)["Products"]
    assert product["Location"].startswith("s3://") and product["Location"].endswith(".zip")
    assert product["DownloadLink"].startswith("http")
    assert "the product carries both its `Location`" in readme_text()
    assert "instead of a `Location`" not in readme_text()


def test_options_file_locations_are_replaced_as_the_readme_says(tmp_path: Path) -> None:
    order = tmp_path / "order.json"
    order.write_text(
        json.dumps({"s3_bucket": "mine", "s3_prefix": "my/prefix", "input_s3_path": "s3://xyz/y/"})
    )
    result = run_cli("--output", str(tmp_path / "out"), "--options-file", str(order))
    assert result.exit_code == 0, result.output
    replaced = re.search(r"replaced +(.*) \(from --options-file\)", result.stdout)
    assert replaced and set(replaced.group(1).split(", ")) == {
        "s3_bucket",
        "s3_prefix",
        "input_s3_path",
    }
    row = next(line for line in README.read_text().splitlines() if "`--options-file" in line)
    for name in ("s3_bucket", "s3_prefix", "input_s3_path"):
        assert f"`{name}`" in row, name


def test_a_second_run_into_the_same_output_empties_it_first(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run_cli("--output", str(out)).exit_code == 0
    (out / "example.data").unlink()  # what the first run wrote goes, whatever is left of it
    assert run_cli("--output", str(out)).exit_code == 0
    assert (out / "example.data").is_file()
    (out / "left-over.txt").write_text("from before")  # not the run's: refused, kept
    refused = run_cli("--output", str(out))
    assert refused.exit_code == 2 and "left-over.txt" in refused.output
    assert (out / "left-over.txt").read_text() == "from before"
    text = " ".join(readme_text().split())
    assert (
        "A second `run` into the same `--output` empties it first of what the previous run" in text
    )


# --- Try the order flow locally ----------------------------------------------------------------


def readme_blocks(heading: str, language: str = "bash") -> list[str]:
    """Every ``language`` code block of the README section ``heading`` (up to the next ``## ``)."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index(f"\n## {heading}\n") + 1 :]
    section = section[: section.find("\n## ")] if "\n## " in section else section
    return re.findall(rf"\n```{language}\n(.*?\n)```\n", section, flags=re.S)


def test_the_order_flow_walkthrough_runs_pasted_as_one_block(tmp_path: Path) -> None:
    serve_line, block = readme_blocks("Try the order flow locally")
    assert serve_line.startswith("hook-processor serve examples/hello_world")
    checkout = tmp_path / "checkout"
    shutil.copytree(
        HELLO_WORLD,
        checkout / "examples" / "hello_world",
        ignore=shutil.ignore_patterns("__pycache__", "hook-work", "out"),
    )
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(("AWS_", "HOOK_"))}
    env.update(PATH=tool_path(), TMPDIR=str(tmp_path), AWS_EC2_METADATA_DISABLED="true")
    child = subprocess.Popen(
        ["bash", "-e", "-o", "pipefail", "-c", block],
        cwd=checkout,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # serve too, so that nothing outlives the test
    )
    try:
        out, err = child.communicate(timeout=240)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
    assert child.returncode == 0, f"stdout:\n{out}\nstderr:\n{err}"
    expected = (HELLO_WORLD / "sample" / "input" / "example.data").read_text().upper()
    assert out.endswith(expected), out
    assert ": completed" in out  # order status
    assert "output-dedl_hello_world-" in out  # order download's path
    assert "anything" not in out + err  # DESP_PASSWORD


def test_the_scale_out_local_pool_block_runs_pasted_as_one_block(tmp_path: Path) -> None:
    (block,) = [
        b
        for b in readme_blocks("Scale out")
        if b.startswith("hook-processor serve examples/hello_world --concurrency 2")
    ]
    checkout = tmp_path / "checkout"
    shutil.copytree(
        HELLO_WORLD,
        checkout / "examples" / "hello_world",
        ignore=shutil.ignore_patterns("__pycache__", "hook-work", "out"),
    )
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(("AWS_", "HOOK_"))}
    env.update(PATH=tool_path(), TMPDIR=str(tmp_path), AWS_EC2_METADATA_DISABLED="true")
    child = subprocess.Popen(
        ["bash", "-e", "-o", "pipefail", "-c", block],
        cwd=checkout,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # serve too, so that nothing outlives the test
    )
    try:
        out, err = child.communicate(timeout=240)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
    assert child.returncode == 0, f"stdout:\n{out}\nstderr:\n{err}"
    lines = out.splitlines()
    assert lines[0].endswith(": completed"), out
    for position, identifier in enumerate(["S2A_ONE", "S2A_TWO", "S2B_THREE", "S2B_FOUR"], 1):
        assert f"  item {position} [{identifier}] completed:" in out
    # One complete output set per item, under the order's prefix plus the item's Id: the
    # product, its STAC catalog and the manifest.
    names = ("_manifest.json", "_stac/example.data.json", "catalog.json", "example.data")
    assert lines[-16:] == [f"hello/{n}/{name}" for n in range(1, 5) for name in names]
    # --wait's lines on stderr, one per change it saw: never more than the pool's 2 running.
    running: set[str] = set()
    most = 0
    for line in err.splitlines():
        found = re.search(r"item (\d+) \[\w+\] (\w+):", line)
        if found:
            (running.add if found.group(2) == "in_progress" else running.discard)(found.group(1))
            most = max(most, len(running))
    assert 1 <= most <= 2, err
