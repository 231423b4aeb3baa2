"""``run --mode container``: checked in the image before the upload, Ctrl-C forwarded as SIGINT.

Issue 10, items 9 and 14, for the container mode: a run the runtime in the image would refuse is
refused before a byte is uploaded; SIGINT while ``process()`` runs in the container reaches it as
SIGINT (not SIGTERM), the run ends with exit 6 naming it, and no container is left behind.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
from container_helpers import SAMPLE, copy_project
from test_interrupt import SLEEPER, Run

from hook_processor import container

pytestmark = pytest.mark.container


@pytest.fixture(scope="module")
def sleeper(
    base_image: Any, docker_client: Any, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str]:
    """hello_world as ``hp_sleeper`` whose process() prints its start and sleeps, built."""
    project = copy_project(tmp_path_factory.mktemp("sleeper"), "hp_sleeper", SLEEPER)
    report = container.build_processor(
        project, base_image=base_image.tag, ca_bundle=base_image.ca_bundle, client=docker_client
    )
    return project, report.tag


def leftovers(docker_client: Any, tag: str) -> list[str]:
    return [c.name for c in docker_client.containers.list(all=True, filters={"ancestor": tag})]


def test_ctrl_c_reaches_the_container_as_sigint_exit_6(
    sleeper: tuple[Path, str], docker_client: Any, tmp_path: Path
) -> None:
    project, tag = sleeper
    run = Run(
        str(project),
        "--input",
        str(SAMPLE),
        "--output",
        str(tmp_path / "out"),
        "--mode",
        "container",
        "--image",
        tag,
        cwd=tmp_path,
    )
    run.wait_for(r"HOOK-TEST started pid=\d+")
    run.child.send_signal(signal.SIGINT)
    code, out, err = run.finish()

    assert code == 6, err
    assert out.startswith("hook-processor run: cancelled (SIGINT"), out
    assert "cancelled by SIGINT during process()" in err
    assert "SIGTERM" not in out + err
    assert "Aborted!" not in err and "Traceback" not in err
    assert leftovers(docker_client, tag) == []
    assert (tmp_path / "out" / "partial.txt").read_text() == "started"


def test_a_run_the_image_refuses_uploads_nothing(
    sleeper: tuple[Path, str], docker_client: Any, tmp_path: Path
) -> None:
    project, tag = sleeper
    run = Run(
        str(project),
        "--input",
        str(SAMPLE),
        "--output",
        str(tmp_path / "out"),
        "--mode",
        "container",
        "--image",
        tag,
        "-o",
        "HOOK_PART_SIZE_MB=many",
        cwd=tmp_path,
    )
    code, _out, err = run.finish()

    assert code == 2, err
    assert "the runtime would refuse this run (exit 2): nothing was uploaded" in err
    assert "HOOK_PART_SIZE_MB" in err.rstrip().splitlines()[-1]
    assert "hook-processor run: uploaded" not in err
    assert "HOOK-TEST started" not in err
    assert leftovers(docker_client, tag) == []
