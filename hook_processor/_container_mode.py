"""The harness's ``container`` mode: the project's image, run once as the service runs it.

:func:`prepare_container` runs before any upload (``run --mode container``): an engine that
answers, the image (built when out of date, see :mod:`hook_processor.container`), and the
runtime's own check (:mod:`hook_processor._preflight`) inside that image with the run's
environment. :func:`run_container` then runs that image; SIGINT/SIGTERM reach the container as
themselves. Library code: problems raise :class:`ContainerError` or :class:`OptionsError`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hook_processor import _image_build, _image_context, _progress_relay
from hook_processor._image_build import BuildEvent
from hook_processor._image_labels import LABEL, LABEL_BASE_IMAGE
from hook_processor.container import _image, build_processor, connect
from hook_processor.errors import ContainerError

if TYPE_CHECKING:
    from hook_processor._modes import ModeResult, PreparedRun
    from hook_processor._progress_relay import ProgressReader

_RESULT_MOUNT = "/hook-result"
_WORK_DIR = "/work"  # the image's HOOK_WORK_DIR (Dockerfile.base)


def run_container(prepared: PreparedRun) -> ModeResult:
    """Run the project's image once, as the service does (``run --mode container``).

    The image is the project's ``name:version``, rebuilt first when the project's files changed
    (on the base image it was built on; ``hook-processor build`` refreshes the base). Options go
    in as environment variables; the container uses the host network (S3 on 127.0.0.1); its result
    is written to a mounted host folder; what ``process()`` wrote is copied out when the run failed.
    ``mode_options``: ``image`` (run this image as is), ``python_image``, ``base_image``,
    ``ca_bundle``, ``on_event`` (build log callback).
    """
    import shutil

    from hook_processor._modes import ModeResult, _read_result, relay_reader

    options = dict(prepared.mode_options)
    client = connect()
    try:
        image = _ready_image(client, prepared, options)
        env = _environment(prepared)
        relay = relay_reader(prepared)
        if relay is not None:  # our display draws the container's bars: it writes events instead
            env[_progress_relay.SETTING] = _progress_relay.RELAY
        result_dir = Path(tempfile.mkdtemp(prefix="hook-result-"))
        try:
            result_dir.chmod(0o777)  # the container runs as uid 1000, not as this user
            code, logs = _run(client, image, env, result_dir, prepared, relay)
            result = _read_result(result_dir / "result.json")
        finally:
            shutil.rmtree(result_dir, ignore_errors=True)
    finally:
        client.close()
    return ModeResult(code, result, logs)


@contextlib.contextmanager
def prepare_container(prepared: PreparedRun) -> Iterator[PreparedRun]:
    """Before any upload: an engine that answers, the image (built when out of date), and the
    runtime's check (:mod:`hook_processor._preflight`) run in that image with the run's
    environment. The run then uses that image as it is."""
    from hook_processor import _preflight

    options = dict(prepared.mode_options)
    client = connect()
    try:
        image = _ready_image(client, prepared, options)
        code, out = _check_in(client, image, _environment(prepared))
    finally:
        client.close()
    refused = _preflight.read_verdict(out)
    if refused is not None:
        raise refused
    if _preflight.MARKER not in out and prepared.log_stream is not None:
        # An image of an older hook-processor has no check: the run itself will tell.
        prepared.log_stream.write(
            f"hook-processor run: {image} could not check the project before the upload "
            f"({f'exit {code}' if isinstance(code, int) else code}); the run will report any "
            "problem\n"
        )
    yield dataclasses.replace(prepared, mode_options={**options, "image": image})


def _ready_image(client: Any, prepared: PreparedRun, options: dict[str, Any]) -> str:
    image = options.get("image") or _ensure_image(client, prepared, options)
    if _image(client, image) is None:
        raise ContainerError(
            f"image {image} is not in the local engine; build it with hook-processor build"
        )
    return str(image)


def _environment(prepared: PreparedRun) -> dict[str, str]:
    """The run's environment as the container gets it (its own work and result paths)."""
    from hook_processor._modes import forwarded_environment

    env = {**forwarded_environment(prepared.environ, prepared.endpoint_url), **prepared.env}
    env = {k: v for k, v in env.items() if k.upper() not in ("HOOK_PROJECT_DIR", "SSL_CERT_FILE")}
    env.update(HOOK_WORK_DIR=_WORK_DIR, HOOK_RESULT_PATH=f"{_RESULT_MOUNT}/result.json")
    return env


def _check_in(client: Any, image: str, env: dict[str, str]) -> tuple[int | str, str]:
    """``python -m hook_processor._preflight`` in ``image``: (exit code or why it could not
    start, its stdout). An image that cannot run the check is not refused here: the run tells."""
    import docker.errors

    try:
        container = client.containers.create(
            image,
            entrypoint=["python", "-m", "hook_processor._preflight"],
            command=[],
            environment=env,
            network_mode="host",
            labels={LABEL + "run": "harness-check"},
        )
    except docker.errors.APIError as exc:
        return _image_build.short(exc.explanation or str(exc)), ""
    try:
        container.start()
        code = int(container.wait().get("StatusCode", 1))
        out = container.logs(stdout=True, stderr=False).decode("utf-8", errors="replace")
    except docker.errors.APIError as exc:  # e.g. no python on the image's PATH
        return _image_build.short(exc.explanation or str(exc)), ""
    finally:
        with contextlib.suppress(docker.errors.APIError):
            container.remove(force=True)
    return code, out


def _ensure_image(client: Any, prepared: PreparedRun, options: dict[str, Any]) -> str:
    from hook_processor.loader import read_project

    root = Path(prepared.project_dir or ".")
    project = read_project(root)
    tag = f"{project.name}:{project.version}"
    python_image, base_image = options.get("python_image"), options.get("base_image")
    # A Python image named anywhere (flag, HOOK_PYTHON_IMAGE, pyproject) is the one to build on.
    chosen = base_image or not _image_context.python_image_choice(python_image, root).is_default
    existing = _image(client, tag)
    if existing is not None and not chosen:
        recorded = (existing.labels or {}).get(LABEL_BASE_IMAGE)
        if recorded and _image(client, recorded) is not None:
            base_image = recorded  # rebuild (if needed) on the base it was built on
    log = prepared.log_stream

    def note(event: BuildEvent) -> None:
        if event.kind in ("step", "note") and log is not None:
            log.write(f"hook-processor build: [{event.stage}] {event.text}\n")
            log.flush()

    report = build_processor(
        root,
        tag=tag,
        python_image=python_image,
        base_image=base_image,
        ca_bundle=options.get("ca_bundle"),
        on_event=options.get("on_event") or note,
        client=client,
        reuse_unchanged=True,
    )
    return report.tag


def _run(
    client: Any,
    image: str,
    env: dict[str, str],
    result_dir: Path,
    prepared: PreparedRun,
    relay: ProgressReader | None = None,
) -> tuple[int, str]:
    import codecs

    import docker.errors

    from hook_processor.errors import ExitCode

    container = client.containers.create(
        image,
        environment=env,
        network_mode="host",
        labels={LABEL + "run": "harness"},
        volumes={str(result_dir): {"bind": _RESULT_MOUNT, "mode": "rw"}},
    )
    chunks: list[str] = []
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def show(text: str, end: bool = False) -> None:
        # Chunks of the log stream are cut anywhere: the reader keeps a cut event for the next.
        if relay is not None:
            text = relay.feed(text) + (relay.finish() if end else "")
        chunks.append(text)
        if prepared.log_stream is not None and text:
            prepared.log_stream.write(text)
            prepared.log_stream.flush()

    def forward(signum: int, count: int) -> None:
        # From a signal handler: the engine is called from another thread, never re-entered.
        name = signal.Signals(signum).name if count == 1 else "SIGKILL"
        threading.Thread(target=_kill, args=(container, name), daemon=True).start()

    forwarding = (
        prepared.interrupt.forwarding(forward)
        if prepared.interrupt is not None
        else contextlib.nullcontext()
    )
    try:
        container.start()
        try:
            with forwarding:
                for data in container.logs(stream=True, follow=True):
                    show(decoder.decode(data))
                show(decoder.decode(b"", final=True), end=True)
                code = int(container.wait().get("StatusCode", ExitCode.INTERNAL_ERROR))
        except KeyboardInterrupt:  # no handler of ours (library use): Ctrl-C is SIGINT, as is
            _kill(container, "SIGINT")
            try:
                code = int(container.wait(timeout=60).get("StatusCode", ExitCode.CANCELLED))
            except Exception:  # still running: removed (killed) below
                code = ExitCode.CANCELLED
        if code != ExitCode.COMPLETED:
            _copy_out(container, f"{_WORK_DIR}/output", prepared.work_dir)
    except docker.errors.APIError as exc:
        raise ContainerError(
            f"docker run of {image}: {_image_build.short(exc.explanation or str(exc))}"
        ) from None
    finally:
        with contextlib.suppress(docker.errors.APIError):
            container.remove(force=True)
    return code, "".join(chunks)


def _kill(container: Any, signal_name: str) -> None:
    import docker.errors

    with contextlib.suppress(docker.errors.APIError):  # it may have ended meanwhile
        container.kill(signal=signal_name)


def _copy_out(container: Any, path: str, dest: Path) -> None:
    """What ``process()`` wrote (``path`` in the container) into ``dest/output``."""
    import io
    import tarfile

    import docker.errors

    try:
        stream, _ = container.get_archive(path)
    except docker.errors.NotFound:
        return
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        tar.extractall(dest, filter="data")
