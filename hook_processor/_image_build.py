"""One classic-builder build (or pull) through the docker SDK, for :mod:`hook_processor.container`.

The engine sends JSON chunks: ``stream`` text (``Step N/M : INSTRUCTION``, the step's output),
``aux`` (the image id), ``status`` (a pull of the FROM image) and ``error``. Each becomes a
:class:`BuildEvent`; a failure becomes one :class:`ContainerError` naming the failing step with
the tail of its output.

**No leftovers**: the classic builder keeps the last image of every stage but the final one (and
the images of the steps of a failed build) as untagged ("dangling") images; after each build, the
dangling images this build created are removed (:func:`remove_dangling`), and so is the image a
rebuild untagged (:func:`remove_if_dangling`). An image that something still uses (a container,
a child image) is left alone.

**The Python image** is pulled before a base image build (:func:`pull_python`), so that a machine
without a registry gets one error naming where to set a local image, not a failing ``FROM``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import time
from collections.abc import Callable
from typing import Any

from hook_processor._image_context import PYTHON_IMAGE_ENV, PYTHON_IMAGE_KEY
from hook_processor.errors import ContainerError

_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_STEP_IMAGE = re.compile(r"^ ---> ([0-9a-f]{12,64})$")


@dataclasses.dataclass(frozen=True)
class BuildEvent:
    """One line of a build: ``kind`` is ``step`` (a Dockerfile instruction starts), ``output``
    (what it printed) or ``note`` (hook-processor says what it does)."""

    stage: str  # "base" or "processor"
    kind: str
    text: str
    step: int = 0
    steps: int = 0


OnEvent = Callable[[BuildEvent], None]


def index_args() -> dict[str, str]:
    return {
        name: os.environ[name].strip()
        for name in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL")
        if os.environ.get(name, "").strip().startswith(("http://", "https://"))
    }


def build(
    client: Any, stage: str, emit: OnEvent, **kwargs: Any
) -> tuple[str, tuple[tuple[str, float], ...]]:
    """Stream one classic-builder build; the image id and each step's time, or ContainerError."""
    import docker.errors

    steps: list[tuple[str, float]] = []
    current: tuple[str, float] | None = None
    tail: list[str] = []  # the output of the current step
    image_id = None
    count = 0
    created: list[str] = []  # (short) ids of the step images this build made, not found in cache
    from_cache = False  # the current step was a cache hit, or a FROM (an image of someone else)
    finished = False
    try:
        for chunk in client.api.build(
            decode=True, rm=True, forcerm=True, network_mode="host", **kwargs
        ):
            if "error" in chunk or "errorDetail" in chunk:
                message = chunk.get("error") or (chunk.get("errorDetail") or {}).get("message", "")
                raise build_failed(stage, message, current, count, tail)
            if "aux" in chunk and isinstance(chunk["aux"], dict) and chunk["aux"].get("ID"):
                image_id = chunk["aux"]["ID"]
            if chunk.get("status") and not chunk.get("progressDetail"):  # a pull of the FROM image
                emit(
                    BuildEvent(stage, "output", f"{chunk.get('id', '')} {chunk['status']}".strip())
                )
            for line in str(chunk.get("stream", "")).splitlines():
                match = _STEP.match(line)
                if match:
                    now = time.monotonic()
                    if current:
                        steps.append((current[0], now - current[1]))
                    current, tail = (match.group(3), now), []
                    count = int(match.group(2))
                    from_cache = match.group(3).upper().startswith("FROM ")
                    emit(BuildEvent(stage, "step", match.group(3), int(match.group(1)), count))
                elif line.startswith(" ---> Using cache"):
                    from_cache = True
                elif _STEP_IMAGE.match(line):
                    if not from_cache:
                        created.append(line.split()[-1])
                elif line.startswith("Successfully built "):
                    image_id = image_id or line.split()[-1]
                elif line.strip() and not line.startswith(
                    (" ---> ", "Removing intermediate", "Successfully tagged")
                ):
                    tail = [*tail[-39:], line]
                    emit(BuildEvent(stage, "output", line))
        finished = True
    except docker.errors.APIError as exc:
        raise ContainerError(
            f"docker build of the {stage} image: {short(exc.explanation or str(exc))}"
        ) from None
    except docker.errors.DockerException as exc:
        raise ContainerError(f"docker build of the {stage} image: {short(str(exc))}") from None
    finally:
        # Each stage's last image comes as an `aux` ID: only the final one, of a build that
        # succeeded, is the image to keep.
        remove_dangling(client, created, keep=image_id if finished else None)
    if current:
        steps.append((current[0], time.monotonic() - current[1]))
    if image_id is None:
        raise ContainerError(
            f"docker build of the {stage} image ended without an image; see its log above"
        )
    return image_id, tuple(steps)


def remove_dangling(client: Any, short_ids: list[str], keep: str | None = None) -> None:
    """Remove the images among ``short_ids`` that are dangling (untagged, no child image): the
    tips of the build stages. Their untagged parents go with them unless something else uses
    them. Best effort: a build must not fail because its leftovers could not be removed."""
    import docker.errors

    if not short_ids:
        return
    keep_id = (keep or "").removeprefix("sha256:")
    try:
        dangling = client.api.images(filters={"dangling": True}, quiet=True)
    except docker.errors.DockerException:
        return
    for full in dangling:
        bare = str(full).removeprefix("sha256:")
        if keep_id and bare.startswith(keep_id):
            continue
        if any(bare.startswith(short_id) for short_id in short_ids):
            with contextlib.suppress(docker.errors.DockerException):
                client.api.remove_image(full, noprune=False)


def remove_if_dangling(client: Any, image_id: str | None) -> None:
    """Remove ``image_id`` when a rebuild left it untagged and unused (the previous image of a
    tag); kept when it still has a tag, a child image or a container."""
    import docker.errors

    if not image_id:
        return
    try:
        if client.api.inspect_image(image_id).get("RepoTags"):
            return
        dangling = client.api.images(filters={"dangling": True}, quiet=True)
        if image_id in dangling:
            client.api.remove_image(image_id, noprune=False)
    except docker.errors.DockerException:
        pass  # gone already, or in use: nothing to clean


def pull(client: Any, image: str, emit: OnEvent, stage: str = "base") -> str | None:
    """Pull ``image``; None when it arrived, else the engine's reason (short)."""
    import docker.errors
    from docker.utils import parse_repository_tag

    repository, tag = parse_repository_tag(image)
    try:
        for chunk in client.api.pull(repository, tag=tag or "latest", stream=True, decode=True):
            if chunk.get("error") or chunk.get("errorDetail"):
                return short(
                    chunk.get("error") or (chunk.get("errorDetail") or {}).get("message", "")
                )
            if chunk.get("status") and not chunk.get("progressDetail"):
                emit(
                    BuildEvent(stage, "output", f"{chunk.get('id', '')} {chunk['status']}".strip())
                )
    except docker.errors.APIError as exc:
        return short(exc.explanation or str(exc))
    except docker.errors.DockerException as exc:
        return short(str(exc))
    return None


def pull_python(client: Any, image: str, source: str | None, emit: OnEvent) -> Any:
    """The Python image, pulled now (not by the build: its error would name a Dockerfile step)."""
    emit(BuildEvent("base", "note", f"pulling the Python image {image}"))
    problem = pull(client, image, emit)
    pulled = None if problem else _local(client, image)
    if pulled is not None:
        return pulled
    given = "the default" if source in (None, "default") else f"from {source}"
    raise ContainerError(
        f"the Python image {image} ({given}) is not in the local engine and cannot be pulled "
        f"({problem or 'not found after the pull'}). On an offline or air-gapped machine name a "
        "local Python image (python3 with venv; scripts/offline-python-image.sh of a "
        "hook-processor checkout builds one): "
        f"--python-image IMAGE, or {PYTHON_IMAGE_ENV}=IMAGE in the environment, "
        f'or {PYTHON_IMAGE_KEY} = "IMAGE" under [tool.hook-processor] in '
        "pyproject.toml."
    )


def _local(client: Any, ref: str) -> Any | None:
    import docker.errors

    try:
        return client.images.get(ref)
    except docker.errors.ImageNotFound:
        return None


def build_failed(
    stage: str, message: str, current: tuple[str, float] | None, steps: int, tail: list[str]
) -> ContainerError:
    where = f" at {current[0]!r}" if current else ""
    lines = [f"the {stage} image build failed{where} (of {steps} steps): {message.strip()}"]
    if tail:
        lines.append("last lines of that step's output:")
        lines += [f"  {line}" for line in tail[-15:]]
    return ContainerError("\n".join(lines))


def short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
