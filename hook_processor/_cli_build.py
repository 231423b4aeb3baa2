"""``hook-processor build``: the processor's container image (and its base image when needed)."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import IO

import click

from hook_processor._log import human_size
from hook_processor.cli import fail
from hook_processor.errors import UserError


@click.command("build", short_help="Build the processor's container image.")
@click.argument("project_dir", required=False, type=click.Path(path_type=Path))
@click.option(
    "--tag", "-t", metavar="TAG", help="Image tag (default: name:version of [tool.hook-processor])."
)
@click.option(
    "--python-image",
    metavar="IMAGE",
    help="Python image the base image is built on (a Debian image with python3 and python3-venv "
    "works). Default: HOOK_PYTHON_IMAGE, else python_image in [tool.hook-processor], else "
    "Dockerfile.base's python:3.x-slim (pulled when missing).",
)
@click.option(
    "--base-image",
    metavar="IMAGE",
    help="Build on this existing hook-processor base image instead of building or reusing one.",
)
@click.option(
    "--ca-bundle",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="CA bundle for pip inside the build (default: PIP_CERT, REQUESTS_CA_BUNDLE or "
    "SSL_CERT_FILE when set); used in a build stage only, never left in the image.",
)
@click.option(
    "--no-cache",
    is_flag=True,
    help="Rebuild every layer (the base image too), even when the images are up to date.",
)
def build_command(
    project_dir: Path | None,
    tag: str | None,
    python_image: str | None,
    base_image: str | None,
    ca_bundle: Path | None,
    no_cache: bool,
) -> None:
    """Build the container image of the processor in PROJECT_DIR (default: the current folder).

    The base image (Python + this hook-processor) is built first when it is missing or holds
    another hook-processor; then the project's Dockerfile on top of it. An image that is up to
    date (same files, same base) is reused; folders written by `hook-processor run` are left out
    of the build context. Ends with the image id, tag, size, size over the base and each stage's
    time. Exits 2 when nothing could be built (no Docker engine, a failing build step, a missing
    project).
    """
    from hook_processor import container

    if python_image and base_image:
        raise click.UsageError(
            "give --python-image (to build the base image) or --base-image, not both"
        )
    log = _BuildLog(sys.stderr)
    try:
        report = container.build_processor(
            project_dir,
            tag=tag,
            python_image=python_image,
            base_image=base_image,
            ca_bundle=ca_bundle,
            no_cache=no_cache,
            on_event=log.event,
            reuse_unchanged=True,
        )
    except UserError as exc:
        raise fail(exc) from None
    finally:
        log.close()
    click.echo(summary(report))


def summary(report: object) -> str:
    from hook_processor.container import BuildReport

    assert isinstance(report, BuildReport)
    stages = ", ".join(
        f"{s.name} {s.seconds:.1f} s" + ("" if s.built else " (up to date)") for s in report.stages
    )
    return "\n".join(
        [
            f"hook-processor build: {report.tag}",
            f"  image       {report.image_id}",
            f"  tag         {report.tag}",
            f"  size        {human_size(report.size)}",
            f"  over base   {human_size(report.size_over_base)} over {report.base_image}"
            f" ({human_size(report.base_size)})",
            f"  stages      {stages}",
            "  run it      hook-processor run --mode container --input FILES --output DIR",
        ]
    )


class _BuildLog:
    """The build log on stderr: on a terminal one line per step and a self-erasing line for the
    step's latest output; otherwise every line, plain."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.status = False
        self.started = time.monotonic()

    def event(self, event: object) -> None:
        from hook_processor.container import BuildEvent

        assert isinstance(event, BuildEvent)
        if event.kind == "step":
            text = f"[{event.stage}] step {event.step}/{event.steps}: {event.text}"
        elif event.kind == "note":
            text = f"[{event.stage}] {event.text}"
        else:
            text = f"  {event.text}"
        if not self.tty:
            self.stream.write(text + "\n")
        elif event.kind == "output":
            width = shutil.get_terminal_size((100, 20)).columns - 1
            self.stream.write("\r\x1b[K" + text[:width])
            self.status = True
        else:
            self._clear()
            width = shutil.get_terminal_size((100, 20)).columns - 1
            self.stream.write(text[:width] + "\n")
        self.stream.flush()

    def _clear(self) -> None:
        if self.status:
            self.stream.write("\r\x1b[K")
            self.status = False

    def close(self) -> None:
        self._clear()
        self.stream.flush()
