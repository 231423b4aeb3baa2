"""Container test fixtures: a Docker engine, an offline Python base image, the hook-processor base.

No registry is reachable in CI, so the Python base image is built offline beforehand:

    scripts/docker-engine.sh          # starts an engine (no bridge, host network only)
    scripts/offline-python-image.sh   # hook-processor/python-offline:bookworm, from debootstrap

Without an engine (or without the Python image) the container tests skip with that hint, or
fail when CI is set: in CI a missing engine is a broken pipeline, not a reason to skip.

Environment:
    HOOK_TEST_PYTHON_IMAGE  Python base image   (default hook-processor/python-offline:bookworm;
                            when unset and absent, a local python:3.11-slim is used if present)
    HOOK_TEST_WHEEL         a prebuilt hook_processor-*.whl (default: built from the repo)
    PIP_CERT / REQUESTS_CA_BUNDLE / SSL_CERT_FILE  CA bundle handed to the build (ca-bundle.pem)
    PIP_INDEX_URL / PIP_EXTRA_INDEX_URL            http(s) values are passed as build args
"""

from __future__ import annotations

import gc
import hashlib
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PYTHON_IMAGE = "hook-processor/python-offline:bookworm"
FALLBACK_PYTHON_IMAGE = "python:3.11-slim"
BUILD_TIMEOUT = 900  # seconds for the docker client (a cold pip install of the dependencies)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def unavailable(message: str) -> None:
    """Fail under CI (a broken pipeline), skip elsewhere (a developer box without Docker)."""
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    """A docker SDK client whose engine answers; skip (fail under CI) otherwise."""
    try:
        import docker
    except ImportError:
        unavailable("the docker package is missing: pip install 'docker>=7.0'")
    problem = None
    with warnings.catch_warnings():
        # A failed connection leaves a socket inside the SDK: collect it here, quietly.
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            client = docker.from_env(timeout=BUILD_TIMEOUT)
            try:
                client.ping()
            except Exception:
                client.close()
                raise
        except Exception as exc:  # DockerException, connection errors, permission errors
            problem = f"{exc.__class__.__name__}: {exc}"
        if problem is not None:
            gc.collect()  # outside the except block, where the exception no longer holds it
    if problem is not None:
        unavailable(f"no Docker engine answers ({problem}); run scripts/docker-engine.sh")
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def python_image(docker_client: Any) -> str:
    """The Python base image the tests build on (present locally; never pulled)."""
    import docker.errors

    def present(tag: str) -> bool:
        try:
            docker_client.images.get(tag)
        except docker.errors.ImageNotFound:
            return False
        return True

    wanted = os.environ.get("HOOK_TEST_PYTHON_IMAGE", "").strip()
    if wanted:
        if present(wanted):
            return wanted
        unavailable(
            f"HOOK_TEST_PYTHON_IMAGE={wanted} is not in the local engine "
            "(no registry is reachable: build it with scripts/offline-python-image.sh TAG)"
        )
    for tag in (DEFAULT_PYTHON_IMAGE, FALLBACK_PYTHON_IMAGE):
        if present(tag):
            return tag
    unavailable(
        "no Python base image: run scripts/offline-python-image.sh "
        f"(builds {DEFAULT_PYTHON_IMAGE}) or set HOOK_TEST_PYTHON_IMAGE"
    )
    raise AssertionError("unreachable")


def ca_bundle_source() -> Path | None:
    """The CA bundle pip uses on this machine (TLS-intercepting proxies), if any."""
    for name in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        value = os.environ.get(name, "").strip()
        if value and Path(value).is_file() and Path(value).stat().st_size > 0:
            return Path(value)
    return None


@dataclass(frozen=True)
class BaseImage:
    tag: str
    python_image: str
    ca_marker: str | None  # a line appended to the build's CA bundle; must never reach the image
    build_log: str
    ca_bundle: Path | None = None  # the marked bundle: processor builds of the tests use it too
    image_id: str = ""  # what the tag named when the session built or reused it


@pytest.fixture(scope="session")
def base_image(
    docker_client: Any, python_image: str, tmp_path_factory: pytest.TempPathFactory
) -> BaseImage:
    """The base image, built once per session by ``container.build_base`` (what `hook-processor
    build` does), under its default tag; reused when an earlier session built the same wheel."""
    from hook_processor import container
    from hook_processor.errors import ContainerError

    work = tmp_path_factory.mktemp("base-image")
    wheel = Path(os.environ["HOOK_TEST_WHEEL"]) if os.environ.get("HOOK_TEST_WHEEL") else None

    # The bundle gets a unique comment line (PEM readers ignore text between certificates) so
    # the tests can prove that no byte of it reaches any layer of the final image.
    source = ca_bundle_source()
    marker = None
    bundle = None
    if source is not None:
        # Derived from the bundle, not random: an unchanged context keeps the build cache.
        marker = f"hook-processor-ca-marker-{hashlib.sha256(source.read_bytes()).hexdigest()[:32]}"
        bundle = work / "ca-bundle.pem"
        bundle.write_bytes(source.read_bytes().rstrip(b"\n") + f"\n# {marker}\n".encode())

    lines: list[str] = []
    try:
        report = container.build_base(
            python_image=python_image,
            ca_bundle=bundle,
            wheel=wheel,
            client=docker_client,
            on_event=lambda event: lines.append(event.text),
        )
    except ContainerError as exc:
        pytest.fail(f"docker build of Dockerfile.base failed: {exc}\n" + "\n".join(lines[-60:]))
    return BaseImage(report.tag, python_image, marker, "\n".join(lines), bundle, report.image_id)


@dataclass(frozen=True)
class Ran:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


RunInContainer = Callable[..., Ran]


@pytest.fixture(scope="session")
def run_in_container(docker_client: Any) -> RunInContainer:
    """run(image, command, entrypoint=None, environment=None, timeout=120) -> Ran.

    Like `docker run --rm --network host IMAGE COMMAND`, never raising on a non-zero exit.
    """

    def run(
        image: str,
        command: list[str] | None = None,
        *,
        entrypoint: list[str] | None = None,
        environment: dict[str, str] | None = None,
        timeout: float = 120,
        **kwargs: Any,
    ) -> Ran:
        container = docker_client.containers.create(
            image,
            command=command,
            entrypoint=entrypoint,
            environment=environment,
            network_mode="host",
            **kwargs,
        )
        try:
            container.start()
            status = container.wait(timeout=timeout)
            out = container.logs(stdout=True, stderr=False).decode(errors="replace")
            err = container.logs(stdout=False, stderr=True).decode(errors="replace")
            return Ran(int(status.get("StatusCode", -1)), out, err)
        finally:
            container.remove(force=True)

    return run
