"""Container images and runs, with the docker SDK (never imported by the runtime).

::

    from hook_processor import container

    report = container.build_processor(Path("examples/hello_world"))
    report.tag, report.image_id, report.size_over_base, [(s.name, s.seconds) for s in report.stages]

Two images:

- **the base image** (:func:`build_base`): ``Dockerfile.base`` on a Python image
  (``--python-image``, ``HOOK_PYTHON_IMAGE``, ``python_image`` of ``[tool.hook-processor]``, or the
  default; pulled first when missing), with a wheel of the *running* hook-processor (see
  :mod:`hook_processor._image_context`). Tagged ``hook-processor-base:<version>-<python image
  slug>`` (and ``hook-processor-base:<version>`` when built on the default Python image, the tag a
  processor ``Dockerfile`` names by default). Built when missing, or when its label says it holds
  another hook-processor (the package digest: the same for an editable and a wheel install of one
  source) or another Python image; reused otherwise.
- **the processor image** (:func:`build_processor`): the project's ``Dockerfile`` built with
  ``BASE_IMAGE`` = the base, tagged ``name:version`` of ``[tool.hook-processor]``, labelled with
  the OCI keys and the workflow entry that ``hook-processor describe`` prints. Run outputs in the
  project folder are left out of its context.

A build leaves no untagged images behind: the build stages' images and the image a rebuild
untagged are removed (:mod:`hook_processor._image_build`).

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
import hashlib
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from hook_processor import __version__, _image_build, _image_context
from hook_processor._image_build import BuildEvent, OnEvent
from hook_processor._image_labels import (
    LABEL as LABEL,  # re-exported
)
from hook_processor._image_labels import (
    LABEL_BASE_ID,
    LABEL_CONTEXT,
    LABEL_PACKAGE,
    LABEL_PYTHON_ID,
    LABEL_PYTHON_IMAGE,
    processor_labels,
)
from hook_processor._image_labels import (
    LABEL_BASE_IMAGE as LABEL_BASE_IMAGE,  # re-exported
)
from hook_processor._image_labels import LABEL_WORKFLOW as LABEL_WORKFLOW  # re-exported
from hook_processor.errors import ContainerError, OptionsError

BASE_REPOSITORY = "hook-processor-base"
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
        from hook_processor._dependencies import install_line

        raise ContainerError(
            f"the docker SDK is not installed (hook-processor installed without its "
            f"dependencies?): {install_line('docker')}"
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
    python_source: str | None = None,
) -> StageReport:
    """The base image for ``python_image``: reused when up to date, built otherwise.

    ``python_image`` None: ``HOOK_PYTHON_IMAGE``, else the default. ``python_source`` says where
    the image came from in the message when it cannot be pulled.
    """
    client = client or connect()
    emit = on_event or (lambda _event: None)
    if python_image is None:
        choice = _image_context.python_image_choice()
        python_image, python_source = choice.image, choice.source
    python_source = python_source or "--python-image"
    tag = tag or base_tag(python_image)
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hook-base-") as tmp:
        context = Path(tmp) / "context"
        (context / "wheels").mkdir(parents=True)
        python = _image(client, python_image)
        existing = _image(client, tag)
        if python is None and existing is None:  # nothing to reuse: a missing image fails first
            python = _image_build.pull_python(client, python_image, python_source, emit)
        if wheel is None:
            emit(BuildEvent("base", "note", "building the hook-processor wheel"))
            wheel = _image_context.build_wheel(Path(tmp) / "dist")
        dockerfile = _image_context.dockerfile_base().read_bytes()
        digest = hashlib.sha256(
            _image_context.package_digest(wheel).encode() + b"\0" + dockerfile
        ).hexdigest()
        if existing is not None and not no_cache:
            labels = existing.labels or {}
            if labels.get(LABEL_PACKAGE) == digest and (
                python is None or labels.get(LABEL_PYTHON_ID) == python.id
            ):
                emit(
                    BuildEvent(
                        "base",
                        "note",
                        f"reusing {tag}: up to date (same hook-processor files, same Python image)",
                    )
                )
                return StageReport("base", tag, existing.id, time.monotonic() - began, built=False)
            emit(
                BuildEvent(
                    "base", "note", f"{tag} holds another hook-processor or Python: rebuilding"
                )
            )
        if python is None:
            python = _image_build.pull_python(client, python_image, python_source, emit)
        (context / "wheels" / wheel.name).write_bytes(wheel.read_bytes())
        (context / "Dockerfile.base").write_bytes(dockerfile)
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
            LABEL_PACKAGE: digest,
            LABEL_PYTHON_IMAGE: python_image,
            LABEL_PYTHON_ID: python.id,
        }
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
    if python_image == _image_context.default_python_image():
        client.images.get(image_id).tag(BASE_REPOSITORY, __version__)
    if existing is not None and existing.id != image_id:
        _image_build.remove_if_dangling(client, existing.id)
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
        choice = _image_context.python_image_choice(python_image, root)
        stages.append(
            build_base(
                python_image=choice.image,
                python_source=choice.source,
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
    skipped: list[str] = []
    context, digest = _image_context.project_context(root, "Dockerfile", bundle_bytes, skipped)
    if skipped:
        emit(
            BuildEvent(
                "processor",
                "note",
                "left out of the build context (outputs of hook-processor run or exec): "
                + ", ".join(skipped),
            )
        )
    began = time.monotonic()
    existing = _image(client, tag)
    if (
        reuse_unchanged
        and not no_cache
        and existing is not None
        and (existing.labels or {}).get(LABEL_CONTEXT) == digest
        and ((existing.labels or {}).get(LABEL_BASE_ID) == base.id)
    ):
        emit(BuildEvent("processor", "note", f"reusing {tag}: up to date with {root}"))
        stages.append(StageReport("processor", tag, existing.id, time.monotonic() - began, False))
        image = existing
    else:
        labels = processor_labels(root, project, base_image, base.id, digest, emit)
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
        if existing is not None and existing.id != image.id:
            _image_build.remove_if_dangling(client, existing.id)
    return BuildReport(
        tag=tag,
        image_id=image.id,
        size=int(image.attrs["Size"]),
        base_image=base_image,
        base_size=int(base.attrs["Size"]),
        stages=tuple(stages),
        labels=dict(image.labels or {}),
    )
