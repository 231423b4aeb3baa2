"""`run --mode container` on a terminal: the container relays its progress, `run` draws the bars.

The stage-in and the publication run in the container, whose log reaches `run` through the
engine's log stream (chunks cut anywhere); the bars are drawn by `run` on its own terminal.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from container_helpers import copy_project
from test_progress import (
    INPUTS,
    RELAY_MARK,
    STAC,
    TOTAL,
    bar,
    child_env,
    on_terminal,
    stac_bytes,
    write_inputs,
)

from hook_processor import container

pytestmark = pytest.mark.container


def test_run_in_container_mode_on_a_terminal_shows_the_containers_bars(
    base_image: Any, docker_client: Any, tmp_path: Path
) -> None:
    project = copy_project(tmp_path, "hp_relay_progress")
    # On this session's base (by id: the tag is shared with other sessions' builds).
    image = container.build_processor(
        project,
        base_image=base_image.image_id or base_image.tag,
        ca_bundle=base_image.ca_bundle,
        client=docker_client,
    )
    inputs = write_inputs(tmp_path)
    command = [
        *(sys.executable, "-m", "hook_processor", "run", str(project)),
        *("--input", str(inputs), "--output", "out", "--mode", "container"),
        *("--image", image.tag),
    ]

    code, stdout, terminal = on_terminal(command, child_env(), tmp_path)

    assert code == 0, terminal
    assert (tmp_path / "out" / "sub" / "c.txt").stat().st_size == INPUTS["sub/c.txt"]
    files = len(INPUTS)
    assert bar("upload inputs", TOTAL, files).search(terminal), terminal
    assert bar("stage-in", TOTAL, files).search(terminal), terminal  # from the container's
    catalog = stac_bytes(tmp_path / "out")  # the STAC catalog, published with the outputs
    assert bar("publish", TOTAL + catalog, files + STAC).search(terminal), terminal  # by run
    assert RELAY_MARK not in terminal and "\x1e" not in terminal, terminal
    assert "INFO    completed: 3 files" in terminal
    assert "mode     container" in stdout


def test_run_in_container_mode_with_stderr_piped_relays_nothing(
    base_image: Any, docker_client: Any, tmp_path: Path
) -> None:
    project = copy_project(tmp_path, "hp_relay_progress")
    image = container.build_processor(
        project,
        base_image=base_image.image_id or base_image.tag,
        ca_bundle=base_image.ca_bundle,
        client=docker_client,
    )
    inputs = write_inputs(tmp_path)
    done = subprocess.run(
        [
            *(sys.executable, "-m", "hook_processor", "run", str(project)),
            *("--input", str(inputs), "--output", "out", "--mode", "container"),
            *("--image", image.tag),
        ],
        env=child_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert done.returncode == 0, done.stderr
    assert RELAY_MARK not in done.stderr and "\x1e" not in done.stderr
    assert "\r" not in done.stderr and "%|" not in done.stderr
    assert "INFO    publish: 7 products, 3.6 MB\n" in done.stderr
