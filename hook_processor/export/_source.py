"""What an export is made from: the workflow entry, the image reference and the image's user.

- A project folder: its entry is ``hook-processor describe``'s (the project's code is imported);
  its image is ``--image``, else the tag ``hook-processor build`` gives it (``name:version``); its
  user is the base image's (``USER`` in Dockerfile.base: the project's Dockerfile builds on it and
  keeps it). No Docker engine is needed.
- ``--image`` alone: an image in the local Docker engine, built by ``hook-processor build``: its
  entry is its workflow label, its user its ``Config.User``, which must be numeric and not root
  (Kubernetes' ``runAsNonRoot`` can verify only a number).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from hook_processor.errors import OptionsError
from hook_processor.export.argo import ImageUser, check_image

_NUMERIC_USER = re.compile(r"^(\d+)(?::(\d+))?$")


def from_project(root: Path, image: str | None) -> tuple[dict[str, Any], str, ImageUser]:
    from hook_processor.describe import describe_project
    from hook_processor.loader import read_project

    if not root.is_dir():
        raise OptionsError(
            f"{root} is not a folder; give the processor project's folder (the one with "
            "pyproject.toml), or --image IMAGE of an image built by hook-processor build"
        )
    if not (root / "pyproject.toml").is_file():
        raise OptionsError(
            f"{root} is not a processor project (it has no pyproject.toml); give the project's "
            "folder (hook-processor new NAME creates one), or --image IMAGE of an image built by "
            "hook-processor build"
        )
    project = read_project(root)
    reference = image or f"{project.name}:{project.version}"
    check_image(reference, given=image is not None)
    entry = describe_project(root)
    return entry, reference, base_image_user()


def base_image_user() -> ImageUser:
    """The user of hook-processor's base image: the ``USER`` line of Dockerfile.base."""
    from hook_processor._image_context import dockerfile_base

    users = re.findall(r"(?m)^USER\s+(\S+)\s*$", dockerfile_base().read_text(encoding="utf-8"))
    user = _numeric(users[-1]) if users else None
    if user is None:  # Dockerfile.base is ours: a test keeps its USER numeric and not root
        raise AssertionError(f"Dockerfile.base's USER is not a numeric non-root user: {users}")
    return user


def from_image(image: str) -> tuple[dict[str, Any], str, ImageUser]:
    from hook_processor.container import LABEL_WORKFLOW, _image, connect

    check_image(image, given=True)
    client = connect()
    try:
        found = _image(client, image)
    finally:
        client.close()
    if found is None:
        raise OptionsError(
            f"--image {image}: no such image in the local Docker engine; build it with "
            "hook-processor build (or docker pull it), or give the project folder as PROJECT_DIR "
            "(then --image is only the reference the template runs)"
        )
    labels = dict(found.labels or {})
    raw = labels.get(LABEL_WORKFLOW)
    if not raw:
        raise OptionsError(
            f"--image {image}: it has no {LABEL_WORKFLOW} label, so its workflow and options are "
            "unknown; build it with hook-processor build (which adds the label), or give the "
            "project folder as PROJECT_DIR"
        )
    try:
        entry = json.loads(raw)
        str(entry["Name"])
    except (ValueError, KeyError, TypeError) as exc:
        raise OptionsError(
            f"--image {image}: its {LABEL_WORKFLOW} label is not a workflow entry ({exc}); "
            "rebuild it with hook-processor build"
        ) from None
    configured = str((found.attrs.get("Config") or {}).get("User") or "")
    user = _numeric(configured)
    if user is None:
        shown = repr(configured) if configured else "root (no USER)"
        raise OptionsError(
            f"--image {image}: it runs as {shown}; the template runs pods as non-root, which "
            "Kubernetes can verify only for a numeric user: build it on hook-processor's base "
            "image (USER 1000:1000) or add a numeric USER uid:gid other than 0"
        )
    return entry, image, user


def _numeric(user: str) -> ImageUser | None:
    match = _NUMERIC_USER.match(user.strip())
    if match is None or int(match.group(1)) == 0:
        return None
    uid = int(match.group(1))
    # USER uid alone: the group is the one /etc/passwd gives it in the image: left to the image.
    return ImageUser(uid=uid, gid=int(match.group(2)) if match.group(2) else None)
