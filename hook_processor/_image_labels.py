"""What a hook-processor image says about itself: the label keys, and the labels of a processor
image (the OCI keys, what it was built from, the workflow entry ``hook-processor describe``
prints). No docker import here."""

from __future__ import annotations

import datetime
import subprocess
import sys
from pathlib import Path
from typing import Any

from hook_processor import __version__, _image_build
from hook_processor._image_build import BuildEvent, OnEvent

LABEL = "io.hook-processor."
LABEL_PACKAGE = LABEL + "package-sha256"  # _image_context.package_digest + Dockerfile.base
LABEL_PYTHON_IMAGE = LABEL + "python-image"
LABEL_PYTHON_ID = LABEL + "python-image-id"
LABEL_CONTEXT = LABEL + "context-sha256"
LABEL_BASE_IMAGE = LABEL + "base-image"
LABEL_BASE_ID = LABEL + "base-image-id"
LABEL_WORKFLOW = LABEL + "workflow"


def processor_labels(
    root: Path, project: Any, base_image: str, base_id: str, digest: str, emit: OnEvent
) -> dict[str, str]:
    """The processor image's labels: OCI keys, what it was built from, its workflow entry."""
    labels = {
        "org.opencontainers.image.title": project.name,
        "org.opencontainers.image.version": project.version,
        "org.opencontainers.image.description": project.description,
        "org.opencontainers.image.created": datetime.datetime.now(datetime.UTC).isoformat(
            timespec="seconds"
        ),
        "org.opencontainers.image.base.name": base_image,
        LABEL + "version": __version__,
        LABEL_CONTEXT: digest,
        LABEL_BASE_IMAGE: base_image,
        LABEL_BASE_ID: base_id,
    }
    source = _project_source(root)
    if source:
        labels["org.opencontainers.image.source"] = source
    workflow = _workflow_entry(root, emit)
    if workflow:
        labels[LABEL_WORKFLOW] = workflow
    return labels


def _project_source(root: Path) -> str | None:
    import tomllib

    urls = (
        tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
        .get("project", {})
        .get("urls", {})
    )
    for key in ("Source", "Repository", "source", "repository", "Homepage", "homepage"):
        if isinstance(urls.get(key), str):
            return str(urls[key])
    return None


def _workflow_entry(root: Path, emit: OnEvent) -> str | None:
    """The JSON `hook-processor describe --format json` prints, computed in a child process (it
    imports the project's code, which must not leak into this process)."""
    import importlib.util

    if importlib.util.find_spec("hook_processor.describe") is None:
        return None  # an older tree without describe: the image carries the OCI labels only
    proc = subprocess.run(
        [sys.executable, "-m", "hook_processor", "describe", str(root), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        reason = _image_build.short(
            proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "no output"
        )
        emit(BuildEvent("processor", "note", f"no workflow label: describe failed here ({reason})"))
        return None
    import json

    return json.dumps(json.loads(proc.stdout), separators=(",", ":"), ensure_ascii=False)
