"""``serve --image IMAGE`` with an image that is no processor: one message, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.container


def test_an_image_without_hook_processor_labels_is_one_message_and_exit_2(
    python_image: str, tmp_path: Path
) -> None:
    script = Path(sys.executable).parent / "hook-processor"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "hook_processor"]
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(("AWS_", "HOOK_"))}
    done = subprocess.run(
        [*command, "serve", "--image", python_image, "--port", "0", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("Error: ") and done.stderr.count("Error:") == 1, done.stderr
    assert python_image in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""
