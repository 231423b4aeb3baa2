"""Container images and runs, with the docker SDK (never imported by the runtime).

::

    from hook_processor import container

    report = container.build_processor(Path("examples/hello_world"))
    report.tag, report.image_id, report.size_over_base, [(s.name, s.seconds) for s in report.stages]

Two images:

- **the base image** (:func:`build_base`): ``Dockerfile.base`` on a Python image, with a wheel of
  the *running* hook-processor (see :mod:`hook_processor._image_context`). Tagged
  ``hook-processor-base:<version>-<python image slug>`` (and ``hook-processor-base:<version>``
  when built on the default Python image, the tag a processor ``Dockerfile`` names by default).
  Built when missing, or when its label says it holds another hook-processor (content digest of
  the wheel) or another Python image; reused otherwise.
- **the processor image** (:func:`build_processor`): the project's ``Dockerfile`` built with
  ``BASE_IMAGE`` = the base, tagged ``name:version`` of ``[tool.hook-processor]``, labelled with
  the OCI keys and the workflow entry that ``hook-processor describe`` prints.

Behind a TLS-intercepting proxy, the CA bundle (``--ca-bundle``, else ``PIP_CERT``,
``REQUESTS_CA_BUNDLE``, ``SSL_CERT_FILE``) goes into each build context as ``ca-bundle.pem``; the
Dockerfiles use it in a build stage only, so it never reaches an image layer. Builds run on the
host network (an engine without a bridge works) with the classic builder the SDK speaks.

The harness's ``container`` mode (run and its checks before the upload) is in
:mod:`hook_processor._container_mode`. Library code: never prints or exits; the build log goes
to an ``on_event`` callback; problems raise :class:`ContainerError` or :class:`OptionsError` with
the whole message.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from hook_processor import __version__, _image_build, _image_context
from hook_processor._image_build import BuildEvent, OnEvent
from hook_processor.errors import ContainerError, OptionsError

BASE_REPOSITORY = "hook-processor-base"
LABEL = "io.hook-processor."
LABEL_WHEEL = LABEL + "wheel-sha256"
LABEL_PYTHON_IMAGE = LABEL + "python-image"
LABEL_PYTHON_ID = LABEL + "python-image-id"
LABEL_CONTEXT = LABEL + "context-sha256"
LABEL_BASE_IMAGE = LABEL + "base-image"
LABEL_BASE_ID = LABEL + "base-image-id"
LABEL_WORKFLOW = LABEL + "workflow"
CLIENT_TIMEOUT = 3600  # seconds without a byte from the engine (a quiet pip install is long)


@dataclasses.dataclass(frozen=True)
class StageReport:
    name: str
    tag: str
    image_id: str
    seconds: float
    built: bool  # False: an up-to-date image was reused
    steps: tuple[tuple[str, float], ...] = ()  # (instruction, seconds)


@dataclasses.dataclass(frozen=True)
class BuildReport:
    tag: str
    image_id: str
    size: int
    base_image: str
    base_size: int
    stages: tuple[StageReport, ...]
    labels: dict[str, str]

    @property
    def size_over_base(self) -> int:
        return self.size - self.base_size


# --- engine ----------------------------------------------------------------------------------


def connect() -> Any:
    """A docker client whose engine answers, or one clear ContainerError."""
    import gc
    import os
    import warnings

    try:
        import docker
    except ImportError:
        raise ContainerError(
            "the docker SDK is not installed: pip install 'hook-processor[docker]'"
        ) from None
    where = os.environ.get("DOCKER_HOST") or "the default socket (unix:///var/run/docker.sock)"
    problem = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # the SDK's socket of a failed attempt
        try:
            client = docker.from_env(timeout=CLIENT_TIMEOUT)
            try:
                client.ping()
            except Exception:
                client.close()
                raise
        except Exception as exc:  # DockerException, connection and permission errors
            problem = _image_build.short(str(exc))
        if problem is not None:
            gc.collect()
    if problem is not None:
        raise ContainerError(
            f"no Docker engine answers at {where} ({problem}). Start one (Docker Desktop, or "
            "`sudo systemctl start docker`; scripts/docker-engine.sh in a hook-processor checkout) "
            "or point DOCKER_HOST at a running engine, then try again."
        )
    return client


def _image(client: Any, ref: str) -> Any | None:
    import docker.errors

    try:
        return client.images.get(ref)
    except docker.errors.ImageNotFound:
        return None


def base_tag(python_image: str, version: str = __version__) -> str:
    """``hook-processor-base:<version>-<slug of the Python image>`` (a valid docker tag)."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", python_image.split("@")[0]).strip("-.") or "python"
    return f"{BASE_REPOSITORY}:{version}-{slug}"[: len(BASE_REPOSITORY) + 1 + 128]


# --- builds ----------------------------------------------------------------------------------


def build_base(
    *,
    python_image: str | None = None,
    tag: str | None = None,
    ca_bundle: Path | None = None,
    no_cache: bool = False,
    wheel: Path | None = None,
    on_event: OnEvent | None = None,
    client: Any = None,
) -> StageReport:
    """The base image for ``python_image``: reused when up to date, built otherwise."""
    client = client or connect()
    emit = on_event or (lambda _event: None)
    python_image = python_image or _image_context.default_python_image()
    tag = tag or base_tag(python_image)
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hook-base-") as tmp:
        context = Path(tmp) / "context"
        (context / "wheels").mkdir(parents=True)
        if wheel is None:
            emit(BuildEvent("base", "note", "building the hook-processor wheel"))
            wheel = _image_context.build_wheel(Path(tmp) / "dist")
        digest = _image_context.wheel_digest(wheel)
        python = _image(client, python_image)
        existing = _image(client, tag)
        if existing is not None and not no_cache:
            labels = existing.labels or {}
            if labels.get(LABEL_WHEEL) == digest and (
                python is None or labels.get(LABEL_PYTHON_ID) == python.id
            ):
                emit(BuildEvent("base", "note", f"{tag} is up to date"))
                return StageReport("base", tag, existing.id, time.monotonic() - began, built=False)
            emit(
                BuildEvent(
                    "base", "note", f"{tag} holds another hook-processor or Python: rebuilding"
                )
            )
        (context / "wheels" / wheel.name).write_bytes(wheel.read_bytes())
        (context / "Dockerfile.base").write_bytes(_image_context.dockerfile_base().read_bytes())
        bundle = _image_context.find_ca_bundle(ca_bundle)
        (context / _image_context.CA_BUNDLE_NAME).write_bytes(
            bundle.read_bytes() if bundle else b""
        )
        buildargs = {"PYTHON_IMAGE": python_image, **_image_build.index_args()}
        labels = {
            "org.opencontainers.image.title": BASE_REPOSITORY,
            "org.opencontainers.image.version": __version__,
            "org.opencontainers.image.description": "Python + hook-processor (entrypoint: exec)",
            "org.opencontainers.image.base.name": python_image,
            LABEL_WHEEL: digest,
            LABEL_PYTHON_IMAGE: python_image,
        }
        if python is not None:
            labels[LABEL_PYTHON_ID] = python.id
        image_id, steps = _image_build.build(
            client,
            "base",
            emit,
            path=str(context),
            dockerfile="Dockerfile.base",
            tag=tag,
            buildargs=buildargs,
            labels=labels,
            nocache=no_cache,
            pull=False,
        )
    if python is None:  # pulled by the build: record what it was built on
        python = _image(client, python_image)
    if python_image == _image_context.default_python_image():
        client.images.get(image_id).tag(BASE_REPOSITORY, __version__)
    return StageReport("base", tag, image_id, time.monotonic() - began, True, steps)


def build_processor(
    project_dir: Path | None = None,
    *,
    tag: str | None = None,
    python_image: str | None = None,
    base_image: str | None = None,
    ca_bundle: Path | None = None,
    no_cache: bool = False,
    on_event: OnEvent | None = None,
    client: Any = None,
    reuse_unchanged: bool = False,
) -> BuildReport:
    """The processor image of the project (and its base image first, unless ``base_image``).

    ``reuse_unchanged``: keep an existing image built from the same files on the same base.
    """
    from hook_processor.loader import read_project

    root = Path(project_dir or ".")
    if not root.is_dir():
        raise OptionsError(
            f"project folder {root} does not exist; give the folder of your processor "
            "(the one with pyproject.toml and Dockerfile)"
        )
    root = root.resolve()
    project = read_project(root)
    if not (root / "Dockerfile").is_file():
        raise OptionsError(
            f"{root} has no Dockerfile; `hook-processor new NAME` generates projects with one "
            "(FROM the hook-processor base image)"
        )
    if python_image and base_image:
        raise OptionsError("--python-image builds the base image, --base-image names one: give one")
    tag = tag or f"{project.name}:{project.version}"
    emit = on_event or (lambda _event: None)
    client = client or connect()
    stages: list[StageReport] = []
    if base_image is None:
        stages.append(
            build_base(
                python_image=python_image,
                ca_bundle=ca_bundle,
                no_cache=no_cache,
                on_event=emit,
                client=client,
            )
        )
        base_image = stages[0].tag
    base = _image(client, base_image)
    if base is None:
        raise ContainerError(
            f"base image {base_image} is not in the local engine; build it with "
            "`hook-processor build` (without --base-image) or pull it"
        )
    dockerfile_text = (root / "Dockerfile").read_text(encoding="utf-8")
    bundle = _image_context.find_ca_bundle(ca_bundle)
    # Only a Dockerfile that uses it in a build stage gets the bundle: a plain `COPY . /app`
    # would otherwise put it into the image.
    bundle_bytes = (
        bundle.read_bytes() if bundle and _image_context.CA_BUNDLE_NAME in dockerfile_text else None
    )
    context, digest = _image_context.project_context(root, "Dockerfile", bundle_bytes)
    began = time.monotonic()
    existing = _image(client, tag) if reuse_unchanged and not no_cache else None
    if (
        existing is not None
        and (existing.labels or {}).get(LABEL_CONTEXT) == digest
        and ((existing.labels or {}).get(LABEL_BASE_ID) == base.id)
    ):
        emit(BuildEvent("processor", "note", f"{tag} is up to date with {root}"))
        stages.append(StageReport("processor", tag, existing.id, time.monotonic() - began, False))
        image = existing
    else:
        labels = _labels(root, project, base_image, base, digest, emit)
        image_id, steps = _image_build.build(
            client,
            "processor",
            emit,
            fileobj=context,
            custom_context=True,
            tag=tag,
            buildargs={"BASE_IMAGE": base_image},
            labels=labels,
            nocache=no_cache,
            pull=False,
        )
        stages.append(
            StageReport("processor", tag, image_id, time.monotonic() - began, True, steps)
        )
        image = client.images.get(image_id)
    return BuildReport(
        tag=tag,
        image_id=image.id,
        size=int(image.attrs["Size"]),
        base_image=base_image,
        base_size=int(base.attrs["Size"]),
        stages=tuple(stages),
        labels=dict(image.labels or {}),
    )


def _labels(
    root: Path, project: Any, base_image: str, base: Any, digest: str, emit: OnEvent
) -> dict[str, str]:
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
        LABEL_BASE_ID: base.id,
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
