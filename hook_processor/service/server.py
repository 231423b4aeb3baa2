"""``hook-processor serve``: start the order service, say where it is, stop it cleanly.

This module puts the layers together (the store, the workflows, the executor, the order service
and the FastAPI app) and runs them under uvicorn on a socket we bind ourselves, so that a port in
use is one clear error before anything starts and ``--port 0`` knows its port.

Storage (ours): by default an embedded moto server (:class:`~hook_processor.s3server.EmbeddedS3`)
is at once the platform's temporary storage and the user's "private" and input storage. A user
puts the input there with boto3 at the printed endpoint and keys (moto accepts the printed keys).
A PRIVATE order whose output endpoint is the embedded one gets its output bucket created on
submission (the live service writes to a bucket the user already has on the Islet; here there is
nothing to have it in). With ``--s3-endpoint`` nothing is created anywhere.

The embedded store's objects outlive ``serve`` (ours): they are mirrored to ``<data dir>/s3/``
(:mod:`hook_processor.s3state`) every few seconds, after each item's run and before its result
is recorded (a completed item's DownloadLink never names an object the mirror lacks), and at
the stop; the next start over the same data dir puts them back on the same port before any
item runs, so inputs, PRIVATE outputs and presigned DownloadLinks issued before still answer.
A SIGKILL loses what was written to the store in the last seconds before it (not yet mirrored).

Stopping: SIGINT (Ctrl-C) or SIGTERM stops accepting requests, cancels the running items (each is
recorded ``cancelled``, its message naming the stop and the signal) and returns 0; a second
SIGINT forces the HTTP server down without waiting for open connections.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import logging
import signal
import socket
import sqlite3
import threading
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

import uvicorn

from hook_processor.errors import OptionsError, UserError
from hook_processor.s3server import EmbeddedS3, S3Server
from hook_processor.service.store import Store

logger = logging.getLogger("hook_processor.serve")

SERVICE_PATH = "/odata/v1/"
DATABASE_NAME = "hook.sqlite3"
S3_PORT_FILE = "s3-port"
S3_STATE_DIR = "s3"

# Option names that name a PRIVATE output location, and the endpoint option that goes with them
# (the standard options and their aliases; hook_processor.options has the full table).
_OUTPUT_PATH_OPTIONS = ("output_s3_path",)
_OUTPUT_BUCKET_OPTIONS = ("s3_bucket",)
_OUTPUT_ENDPOINT_OPTIONS = ("output_s3_endpoint_url", "s3_endpoint_url")


@dataclasses.dataclass(frozen=True)
class ServeSettings:
    """Everything ``serve`` was asked for (the CLI builds it; tests may too)."""

    projects: Sequence[Path] = ()
    images: Sequence[str] = ()
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path(".hook-serve")
    s3_endpoint: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    mode: str = "subprocess"
    concurrency: int | None = None  # None: 1 (local), the cluster's threads (dask)
    users_file: Path | None = None
    executor: str = "local"  # "local" | "dask"
    dask_scheduler: str | None = None
    dask_gateway: str | None = None
    dask_key: str | None = dataclasses.field(default=None, repr=False)  # HOOK_DASK_KEY


@dataclasses.dataclass(frozen=True)
class Started:
    """Where the running service is: what the start-up line prints."""

    dashboard_url: str
    dashboard_login: bool  # the dashboard asks for a login (service.dashboard.needs_login)
    token_url: str
    service_root: str
    s3_endpoint: str
    s3_access_key: str
    s3_secret_key: str | None  # None for a user's own endpoint: their secret is never printed
    data_dir: str
    workflows: tuple[str, ...]
    mode: str
    concurrency: int
    executor: str = "local"

    def json_line(self) -> str:
        """The one stdout line of ``serve --json`` (fixed keys, one line)."""
        keys = ("token_url", "service_root", "s3_endpoint", "s3_access_key", "s3_secret_key")
        fields: dict[str, Any] = {k: getattr(self, k) for k in keys}
        fields["data_dir"] = self.data_dir
        return json.dumps(fields)

    def text(self) -> str:
        """The human start-up block."""
        secret = self.s3_secret_key if self.s3_secret_key is not None else "(yours, not shown)"
        login = "  (log in with a user and password, as at the token URL)"
        return "\n".join(
            [
                f"hook-processor serve: {len(self.workflows)} workflows "
                f"({', '.join(self.workflows)}), "
                + (f"mode {self.mode}" if self.executor == "local" else self.executor)
                + f", concurrency {self.concurrency}",
                f"  dashboard     {self.dashboard_url}{login if self.dashboard_login else ''}",
                f"  token URL     {self.token_url}",
                f"  service root  {self.service_root}",
                f"  S3 endpoint   {self.s3_endpoint}",
                f"  S3 keys       access {self.s3_access_key}  secret {secret}",
                f"  data dir      {self.data_dir}",
                "Press Ctrl-C to stop.",
            ]
        )


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (0: a free port), or one clear error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise OptionsError(
                f"--port {port}: {host}:{port} is in use by another program; choose another "
                "port with --port N, or --port 0 for a free one"
            ) from None
        raise OptionsError(
            f"--host {host} --port {port}: cannot listen there ({exc.strerror})"
        ) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(
    settings: ServeSettings,
    *,
    on_started: Callable[[Started], None],
    stop: threading.Event | None = None,
) -> int:
    """Run the service until SIGINT/SIGTERM (or ``stop`` is set); the process's exit code (0).

    Bad settings (a folder that is no project, an image without labels, a port in use, a bad
    users file) raise :class:`~hook_processor.errors.UserError` before anything listens.
    """
    from hook_processor.service.auth import load_users
    from hook_processor.service.workflows import load_workflows

    users = load_users(settings.users_file) if settings.users_file is not None else None
    workflows = load_workflows(list(settings.projects), list(settings.images))
    sock = bind_socket(settings.host, settings.port)
    late = _LateSignals()
    try:
        return _serve(settings, sock, users, workflows, late, on_started, stop)
    finally:
        late.restore()


def _serve(
    settings: ServeSettings,
    sock: socket.socket,
    users: Mapping[str, str] | None,
    workflows: Sequence[Any],
    late: _LateSignals,
    on_started: Callable[[Started], None],
    stop: threading.Event | None,
) -> int:
    from hook_processor.service.app import create_app
    from hook_processor.service.auth import TOKEN_PATH
    from hook_processor.service.dashboard import needs_login
    from hook_processor.service.executor import Executor
    from hook_processor.service.workflows import sync_workflows

    with contextlib.ExitStack() as stack:
        stack.callback(sock.close)
        data_dir = settings.data_dir.resolve()
        s3, embedded, local = _storage(settings, data_dir, stack)
        store = Store(data_dir / DATABASE_NAME)
        stack.callback(store.close)
        sync_workflows(store, workflows)
        if settings.executor == "dask":
            executor, concurrency = _dask_executor(settings, workflows, s3, data_dir, local)
            stack.callback(executor.close)
        else:
            executor = _executor_class(Executor)(
                mode=settings.mode, s3=s3, data_dir=data_dir, mirror=local
            )
            concurrency = settings.concurrency or 1
        if embedded is None:
            _check_endpoint(executor, s3)
        service = _service_class()(
            store,
            workflows,
            executor,
            concurrency=concurrency,
            embedded=embedded,
            mirror=local,
        )
        login = needs_login(settings.host, users)
        app = create_app(service, store, s3=s3, users=users, dashboard_login=login)
        service.start()
        why: list[str] = []  # the running items' cancel message names the stop
        stack.callback(_stop_service, service, why)

        host, port = sock.getsockname()[:2]
        root = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        started = Started(
            dashboard_url=root + "/",
            dashboard_login=login,
            token_url=root + TOKEN_PATH,
            service_root=root + SERVICE_PATH,
            s3_endpoint=s3.endpoint_url,
            s3_access_key=s3.access_key,
            s3_secret_key=s3.secret_key if embedded is not None else None,
            data_dir=str(data_dir),
            workflows=tuple(w.name for w in workflows),
            mode=settings.mode,
            concurrency=concurrency,
            executor=f"executor dask ({executor.where})"
            if settings.executor == "dask"
            else "local",
        )
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        server = _Server(config, on_started=lambda: on_started(started), stop=stop)
        server.run(sockets=[sock])
        if server.stopped_by is not None:
            logger.info("%s: stopping, running items are cancelled", server.stopped_by)
            why.append(f"hook-processor serve was stopped ({server.stopped_by})")
        else:
            why.append("hook-processor serve was stopped")
        late.install()  # the stack's unwinding cancels and records the running items
    return 0


class _LateSignals:
    """After the HTTP server stopped, SIGINT/SIGTERM only log: the service is cancelling and
    recording the running items, and a second Ctrl-C (a terminal sends it to the whole group,
    children included) must not interrupt that. :meth:`restore` puts the old handlers back."""

    def __init__(self) -> None:
        self._original: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._original[sig] = signal.signal(sig, self._late)

    def restore(self) -> None:
        for sig, handler in self._original.items():
            signal.signal(sig, handler)
        self._original.clear()

    @staticmethod
    def _late(sig: int, _frame: FrameType | None) -> None:
        name = signal.Signals(sig).name
        logger.info("%s: already stopping (cancelling the running items)", name)


def _stop_service(service: Any, why: list[str]) -> None:
    service.stop(cancel_running=True, reason=why[0] if why else None)


def _check_endpoint(executor: Any, s3: S3Server) -> None:
    """The user's own store answers before anything listens: the service's buckets are made
    there now (not at the first item), so a wrong endpoint or wrong keys stop ``serve`` at once."""
    try:
        executor.ensure_buckets()
    except UserError as err:
        raise UserError(f"--s3-endpoint {s3.endpoint_url}: {err}; serve did not start") from None


def _storage(
    settings: ServeSettings, data_dir: Path, stack: contextlib.ExitStack
) -> tuple[S3Server, S3Server | None, EmbeddedS3 | None]:
    """The S3 endpoint (and the embedded one with its server, when it is ours).

    The embedded server keeps the port of its last start (``<data dir>/s3-port``) when that port
    is free: queued orders and presigned DownloadLinks name the endpoint, and a restart must not
    turn them into links to a server that is gone. Its objects are put back from
    ``<data dir>/s3/`` before anything runs (see the module doc)."""
    if settings.s3_endpoint:
        s3 = S3Server(
            settings.s3_endpoint, settings.s3_access_key or "", settings.s3_secret_key or ""
        )
        return s3, None, None
    host = settings.host if settings.host not in ("0.0.0.0", "::") else "127.0.0.1"
    port_file = data_dir / S3_PORT_FILE
    try:
        port = int(port_file.read_text().strip())
    except (OSError, ValueError):
        port = 0
    if port and not _free(host, port):
        logger.warning(
            "the embedded S3's last port %d is taken; it gets a new one (DownloadLinks issued "
            "before and queued orders naming the old endpoint do not reach it)",
            port,
        )
        port = 0
    data_dir.mkdir(parents=True, exist_ok=True)
    state_dir = data_dir / S3_STATE_DIR
    embedded = EmbeddedS3(host=host, port=port, state_dir=state_dir)
    try:
        s3 = embedded.start()
    except (OSError, sqlite3.Error, ValueError) as exc:  # a damaged mirror, a full disk
        raise OptionsError(
            f"--data-dir {data_dir}: the embedded S3's objects in {state_dir} cannot be put "
            f"back ({exc}); move that folder away to start with an empty store"
        ) from None
    stack.callback(embedded.stop)
    port_file.write_text(f"{urlsplit(s3.endpoint_url).port}\n")
    return s3, s3, embedded


def _free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As the server binds (werkzeug sets SO_REUSEADDR): the last life's connections in
        # TIME_WAIT do not take the port, only a program listening there does.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def _quiet_conflict() -> Iterator[None]:
    try:
        yield
    except Exception as exc:  # botocore's ClientError: the bucket exists already (a race)
        code = getattr(exc, "response", {}).get("Error", {}).get("Code")
        if code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise


def output_bucket(options: Any, embedded: S3Server) -> str | None:
    """The PRIVATE output bucket an order body names on the embedded endpoint, if any."""
    if not isinstance(options, list):
        return None
    values = {
        str(o.get("Name", "")).lower(): o.get("Value") for o in options if isinstance(o, Mapping)
    }
    endpoint = next((values[n] for n in _OUTPUT_ENDPOINT_OPTIONS if values.get(n)), None)
    if not isinstance(endpoint, str) or not _same_endpoint(endpoint, embedded.endpoint_url):
        return None
    for name in _OUTPUT_PATH_OPTIONS:
        path = values.get(name)
        if isinstance(path, str) and path.startswith("s3://"):
            return path[len("s3://") :].split("/", 1)[0] or None
    for name in _OUTPUT_BUCKET_OPTIONS:
        bucket = values.get(name)
        if isinstance(bucket, str) and bucket:
            return bucket
    return None


def _same_endpoint(a: str, b: str) -> bool:
    local = {"127.0.0.1", "localhost", "::1"}
    pa, pb = urlsplit(a), urlsplit(b)
    hosts_match = pa.hostname == pb.hostname or {pa.hostname, pb.hostname} <= local
    return hosts_match and pa.port == pb.port


def _dask_executor(
    settings: ServeSettings,
    workflows: Sequence[Any],
    s3: S3Server,
    data_dir: Path,
    mirror: EmbeddedS3 | None,
) -> tuple[Any, int]:
    """The Dask executor, connected (a UserError when the cluster does not answer), and the
    items to keep in flight: ``--concurrency``, else the threads of the connected workers."""
    from hook_processor.service import dask_executor

    images = [w.name for w in workflows if w.image is not None]
    if images:
        raise OptionsError(
            f"--executor dask: {', '.join(images)} is served from an image, and Dask workers "
            "run processors from project folders (no container engine on them); serve the "
            "project folder instead, or use --executor local (or export it to Argo)"
        )
    key = settings.dask_key or ""
    try:
        dask_executor.check_key(key)
    except ValueError as exc:
        raise OptionsError(
            f"--executor dask: HOOK_DASK_KEY is {exc}; make one with "
            "`python -m hook_processor.service.dask_executor` and give the same to serve and "
            "to every worker"
        ) from None
    if settings.dask_gateway:
        where = f"--dask-gateway {settings.dask_gateway}"
        connect, close = dask_executor.connect_gateway(
            settings.dask_gateway, workers=settings.concurrency or 2, key=key
        )
    else:
        where = f"--dask-scheduler {settings.dask_scheduler}"
        connect, close = dask_executor.connect_scheduler(settings.dask_scheduler or ""), None
    executor = _executor_class(dask_executor.DaskExecutor)(
        connect=connect,
        where=where,
        key=key,
        close=close,
        s3=s3,
        data_dir=data_dir,
        mirror=mirror,
    )
    executor.bundle([w.project_dir for w in workflows if w.project_dir is not None])
    threads = executor.start()
    if threads == 0 and settings.concurrency is None:
        logger.warning("%s: no worker is connected yet; items wait for one", where)
    concurrency = settings.concurrency or max(threads, 1)
    logger.info("%s: %d worker threads connected; %d items in flight", where, threads, concurrency)
    return executor, concurrency


def _executor_class(base: type[Any]) -> type[Any]:
    """The executor that mirrors the embedded store after each run, before its result is
    recorded: an item recorded ``completed`` has its output on disk too."""

    class MirroringExecutor(base):
        def __init__(self, *args: Any, mirror: EmbeddedS3 | None, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._mirror = mirror

        def run(self, item: Any, cancel: threading.Event) -> dict[str, Any]:
            result: dict[str, Any] = super().run(item, cancel)
            if self._mirror is not None:
                try:
                    self._mirror.persist()
                except Exception:  # the background sync tries again; the result stands
                    logger.exception("item %s: could not mirror the embedded S3", item.item_id)
            return result

    return MirroringExecutor


def _service_class() -> Any:
    """The order service with the embedded store's bucket creation (ours) in front of submit."""
    from hook_processor.service.orders import OrderService

    class LocalOrderService(OrderService):
        def __init__(
            self,
            *args: Any,
            embedded: S3Server | None,
            mirror: EmbeddedS3 | None = None,
            **kwargs: Any,
        ) -> None:
            super().__init__(*args, **kwargs)
            self._embedded = embedded
            self._mirror = mirror
            self._client: Any = None
            self._created: set[str] = set()
            self._lock = threading.Lock()

        def submit(self, body: Mapping[str, Any], *, user: str) -> int:
            if self._embedded is not None and isinstance(body, Mapping):
                bucket = output_bucket(body.get("WorkflowOptions"), self._embedded)
                if bucket is not None:
                    self._ensure_bucket(bucket)
            order_id: int = super().submit(body, user=user)
            if self._mirror is not None:  # its input is in the store now: mirror it soon
                self._mirror.wake()
            return order_id

        def _ensure_bucket(self, bucket: str) -> None:
            with self._lock:
                if bucket in self._created:
                    return
                if self._client is None:
                    assert self._embedded is not None
                    self._client = self._embedded.client()
                with _quiet_conflict():
                    self._client.create_bucket(Bucket=bucket)
                self._created.add(bucket)

    return LocalOrderService


class _Server(uvicorn.Server):
    """uvicorn's server, telling us when it accepts requests, with our own signal handling:
    the signal stops the server and is not raised again afterwards (uvicorn re-raises it, which
    would turn a clean stop into exit 130/143 before the running items are recorded)."""

    def __init__(
        self,
        config: uvicorn.Config,
        *,
        on_started: Callable[[], None],
        stop: threading.Event | None,
    ) -> None:
        super().__init__(config)
        self._on_started = on_started
        self._stop = stop
        self.stopped_by: str | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and not self.should_exit:
            self._on_started()

    async def on_tick(self, counter: int) -> bool:
        if self._stop is not None and self._stop.is_set():
            return True
        should_exit: bool = await super().on_tick(counter)
        return should_exit

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self._handle) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)

    def _handle(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        self.should_exit = True
        self.stopped_by = signal.Signals(sig).name
