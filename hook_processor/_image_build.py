"""Streaming one classic-builder build through the docker SDK, for :mod:`hook_processor.container`.

The engine sends JSON chunks: ``stream`` text (``Step N/M : INSTRUCTION``, the step's output),
``aux`` (the image id), ``status`` (a pull of the FROM image) and ``error``. Each becomes a
:class:`BuildEvent`; a failure becomes one :class:`ContainerError` naming the failing step with
the tail of its output.
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from collections.abc import Callable
from typing import Any

from hook_processor.errors import ContainerError

_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")


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
                    emit(BuildEvent(stage, "step", match.group(3), int(match.group(1)), count))
                elif line.startswith("Successfully built "):
                    image_id = image_id or line.split()[-1]
                elif line.strip() and not line.startswith(
                    (" ---> ", "Removing intermediate", "Successfully tagged")
                ):
                    tail = [*tail[-39:], line]
                    emit(BuildEvent(stage, "output", line))
    except docker.errors.APIError as exc:
        raise ContainerError(
            f"docker build of the {stage} image: {short(exc.explanation or str(exc))}"
        ) from None
    except docker.errors.DockerException as exc:
        raise ContainerError(f"docker build of the {stage} image: {short(str(exc))}") from None
    if current:
        steps.append((current[0], time.monotonic() - current[1]))
    if image_id is None:
        raise ContainerError(
            f"docker build of the {stage} image ended without an image; see its log above"
        )
    return image_id, tuple(steps)


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
