"""``serve --executor dask``: order items as tasks on a ``distributed`` cluster.

The service keeps its queue (SQLite, priority order, restart-safe) and hands the cluster as many
items at once as ``--concurrency`` says (default: the threads of the workers connected at the
start). Each item is one Dask task, :func:`~hook_processor.service._dask_task.run_item`,
submitted with ``priority=`` the order's Priority (Dask runs higher first: it orders our items
among themselves when more are in flight than threads, and among other clients' work on a
shared cluster), key ``hook-item-<service>-<item Id>-<attempt>``. Its environment travels
sealed with ``HOOK_DASK_KEY`` (see ``_dask_task``); the result, the exit code and the run's log
come back with the task's result and are recorded as a local item's are. Where each attempt
started is appended to the item's log (``started on Dask worker tcp://...``).

What is ours:

- Cancel: the item's ``distributed.Event`` is set (a running child gets SIGTERM, exit 6, as
  locally); a task no worker has started yet is cancelled (``Future.cancel``) and recorded
  ``cancelled`` at once.
- A worker that dies mid-item: Dask runs the task again on another worker (up to its
  ``distributed.scheduler.allowed-failures``); the rerun has the same ``HOOK_ORDER_ID``, so the
  runtime recognises a published set or takes over its own lease (exactly one output set). When
  Dask gives up (``KilledWorker``) the item fails with that message.
- A scheduler that goes away: items that had started fail with a message naming it; an item
  handed over but not started goes back to the queue (:class:`~hook_processor.service.executor.
  NotRun`); no item is claimed while no scheduler answers, so queued items stay queued, and the
  service connects again by itself (every few seconds) when one answers at the address again.
- The log of a Dask item arrives when its run ends (not line by line while it runs).
- Image workflows (``--image``) are not run on Dask: they need a container engine on the
  workers; serve refuses them with this executor (export them to Argo, or use ``--executor
  local``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from hook_processor.errors import ExitCode, UserError
from hook_processor.service import _dask_task
from hook_processor.service.executor import Executor, ItemRun, NotRun, _cancelled, _failed

logger = logging.getLogger("hook_processor.serve")

RECONNECT_EVERY = 5.0  # seconds between attempts to reach a scheduler that went away
CONNECT_TIMEOUT = 10.0
_WAIT_STEP = 0.2


class DaskExecutor(Executor):
    """Runs order items as Dask tasks (see the module doc). ``connect`` makes a new
    ``distributed.Client`` (to the scheduler, or to the Gateway's cluster); ``where`` names
    the cluster in messages (``--dask-scheduler tcp://...``)."""

    def __init__(
        self,
        *,
        connect: Callable[[], Any],
        where: str,
        key: str,
        close: Callable[[], None] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("mode", "subprocess")
        super().__init__(**kwargs)
        self._connect = connect
        self.where = where
        self._key = key
        self._close_cluster = close
        self._service = secrets.token_hex(4)  # keys and events of two services never meet
        self._lock = threading.Lock()
        self._client: Any = None
        self._last_attempt = 0.0
        self._started: dict[str, str] = {}  # task key -> the worker it started on last
        self._logs: dict[str, IO[str]] = {}  # task key -> the item's open log
        self._projects: dict[str, tuple[bytes, str]] = {}

    # --- the cluster ------------------------------------------------------------------------

    def start(self) -> int:
        """Connect now (a UserError naming ``where`` when nothing answers); the threads of the
        workers connected (what ``--concurrency`` defaults to)."""
        try:
            client = self._new_client()
        except Exception as exc:
            if self._close_cluster is not None:
                with contextlib.suppress(Exception):
                    self._close_cluster()
            fix = (
                f"check the URL and your token ({GATEWAY_TOKEN})"
                if self.where.startswith("--dask-gateway")
                else "start it (dask scheduler, then dask worker) or fix the address"
            )
            raise UserError(
                f"{self.where}: cannot connect to the Dask cluster there ({_reason(exc)}); "
                f"{fix}; serve did not start"
            ) from None
        with self._lock:
            self._client = client
        return int(sum(client.nthreads().values()))

    def bundle(self, project_dirs: list[Path]) -> None:
        """Zip the served project folders now (a UserError for one too big to travel): each
        item's task carries its project as it was when serve started."""
        for root in project_dirs:
            try:
                self._projects[str(root)] = _dask_task.project_zip(root)
            except ValueError as exc:
                raise UserError(f"--executor dask: {exc}") from None

    def available(self) -> bool:
        return self._live_client() is not None

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close(timeout=5)
        if self._close_cluster is not None:
            with contextlib.suppress(Exception):
                self._close_cluster()

    def _new_client(self) -> Any:
        self._last_attempt = time.monotonic()
        client = self._connect()
        client.subscribe_topic(_dask_task.TOPIC, self._on_started)
        return client

    def _live_client(self) -> Any:
        with self._lock:
            client = self._client
            if client is not None and client.status == "running":
                return client
            if client is not None:
                # Lost. distributed would reconnect this client by itself, but without our
                # subscription to the tasks' start events: a new client has it.
                self._client = None
                threading.Thread(target=_close_quietly, args=(client,), daemon=True).start()
            if time.monotonic() - self._last_attempt < RECONNECT_EVERY:
                return None
            try:
                self._client = self._new_client()
            except Exception as exc:
                logger.warning("%s: no Dask scheduler answers yet (%s)", self.where, _reason(exc))
                return None
            logger.info("%s: connected again; queued items run", self.where)
            return self._client

    def _on_started(self, event: Any) -> None:
        """A task started on a worker: remember where, and say so in the item's log."""
        _when, message = event
        if not isinstance(message, dict) or "key" not in message:
            return
        key, worker = str(message["key"]), str(message.get("worker"))
        rerun = key in self._started
        self._started[key] = worker
        log = self._logs.get(key)
        if log is not None:
            again = " again (Dask re-ran it: its worker was lost)" if rerun else ""
            with contextlib.suppress(ValueError):  # closed: the run just ended
                log.write(f"hook-processor serve: started{again} on Dask worker {worker}\n")

    # --- one item ---------------------------------------------------------------------------

    def run(self, item: ItemRun, cancel: threading.Event) -> dict[str, Any]:
        """Run the item on the cluster; its result (as :meth:`Executor.run`). Raises
        :class:`NotRun` when no scheduler took it (it goes back to the queue)."""
        item_dir = self.item_dir(item.item_id)
        item_dir.mkdir(parents=True, exist_ok=True)
        return self.logged_attempt(
            item,
            f"on the Dask cluster at {self.where}, ",
            lambda log: self._on_cluster(item, cancel, log),
        )

    def _on_cluster(self, item: ItemRun, cancel: threading.Event, log: IO[str]) -> dict[str, Any]:
        from distributed import Event

        client = self._live_client()
        if client is None:
            raise NotRun(f"no Dask scheduler answers at {self.where}")
        if cancel.is_set():
            return _cancelled("cancelled before the run started; nothing was published")
        self.ensure_buckets()
        if item.workflow.entrypoint is not None:  # the built-in odp-test: its input file
            self._odp_test_input(item)
        key = f"hook-item-{self._service}-{item.item_id}-{item.attempt}"
        spec = self._spec(item, key)
        env = self._environment(item, self.item_dir(item.item_id), self.item_dir(item.item_id))
        for name in ("HOOK_WORK_DIR", "HOOK_RESULT_PATH", "HOOK_PROJECT_DIR"):
            env.pop(name, None)  # the worker's own paths
        sealed = _dask_task.seal(self._key, env)
        self._logs[key] = log
        try:
            try:
                future = client.submit(
                    _dask_task.run_item,
                    spec,
                    sealed,
                    key=key,
                    priority=item.priority,
                    pure=False,
                )
            except Exception as exc:
                raise NotRun(f"the Dask scheduler at {self.where} did not take it: {exc}") from None
            try:
                outcome = self._wait(future, key, spec, cancel, client, Event)
            finally:
                with contextlib.suppress(Exception):  # the scheduler may forget it now
                    future.release()
        finally:
            self._logs.pop(key, None)
        if isinstance(outcome, dict) and "result" in outcome:
            if outcome.get("log"):
                log.write(str(outcome["log"]))
            result: dict[str, Any] = dict(outcome["result"])
            result["ExitCode"] = int(outcome["exit_code"])
            self._started.pop(key, None)
            return result
        assert isinstance(outcome, dict)
        return outcome

    def _spec(self, item: ItemRun, key: str) -> _dask_task.TaskSpec:
        project, digest = None, None
        if item.workflow.project_dir is not None:
            root = str(item.workflow.project_dir)
            if root not in self._projects:
                self._projects[root] = _dask_task.project_zip(item.workflow.project_dir)
            project, digest = self._projects[root]
        return _dask_task.TaskSpec(
            key=key,
            item_id=item.item_id,
            cancel_event=f"hook-cancel-{self._service}-{item.item_id}-{item.attempt}",
            project=project,
            project_digest=digest,
            endpoint_url=self.s3.endpoint_url,
        )

    def _wait(
        self,
        future: Any,
        key: str,
        spec: _dask_task.TaskSpec,
        cancel: threading.Event,
        client: Any,
        event_class: Any,
    ) -> dict[str, Any]:
        """The task's outcome, or our result when the cluster ended it (see the module doc)."""
        from distributed.client import FutureCancelledError
        from distributed.scheduler import KilledWorker

        asked_to_cancel = False
        while True:
            try:
                value: dict[str, Any] = future.result(timeout=_WAIT_STEP)
                return value
            except TimeoutError:
                pass
            except FutureCancelledError as exc:
                worker = self._started.pop(key, None)
                if asked_to_cancel and worker is None:
                    return _cancelled(
                        "cancelled before it started on a Dask worker; nothing was run"
                    )
                if exc.reason == "scheduler-connection-lost" or client.status != "running":
                    if worker is None:
                        raise NotRun(
                            f"the Dask scheduler at {self.where} went away before it started"
                        ) from None
                    return _failed(
                        ExitCode.INTERNAL_ERROR,
                        f"the Dask scheduler at {self.where} went away while this item ran on "
                        f"worker {worker}; its run was stopped and it is not run again: bring "
                        "the scheduler back and order it again",
                    )
                return _failed(
                    ExitCode.INTERNAL_ERROR,
                    f"the Dask cluster at {self.where} cancelled this item ({exc.reason})",
                )
            except ModuleNotFoundError as exc:  # unpickling the task on a worker
                return _failed(
                    ExitCode.INTERNAL_ERROR,
                    f"a Dask worker could not run the item: {exc}; install hook-processor (the "
                    "version serve runs) and the project's dependencies where the workers run",
                )
            except KilledWorker as exc:
                self._started.pop(key, None)
                return _failed(
                    ExitCode.INTERNAL_ERROR,
                    f"Dask gave up on this item: every worker that ran it died ({exc}); see the "
                    "workers' logs, then order it again",
                )
            if cancel.is_set() and not asked_to_cancel:
                asked_to_cancel = True
                with contextlib.suppress(Exception):  # gone: the wait above reports it
                    event_class(spec.cancel_event, client=client).set()
                if key not in self._started:
                    future.cancel()


def connect_scheduler(address: str) -> Callable[[], Any]:
    """A ``connect`` for :class:`DaskExecutor`: a Client of the scheduler at ``address``."""

    def connect() -> Any:
        from distributed import Client

        _probe(address)
        return Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)

    return connect


def _close_quietly(client: Any) -> None:
    with contextlib.suppress(Exception):
        client.close(timeout=5)


def _probe(address: str) -> None:
    """A refused TCP connection fails at once (distributed retries until its timeout)."""
    parts = urlsplit(address)
    if parts.scheme not in ("tcp", "tls") or parts.hostname is None or parts.port is None:
        return  # another transport (inproc, ucx): distributed says what it thinks
    with socket.create_connection((parts.hostname, parts.port), timeout=CONNECT_TIMEOUT):
        pass


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def check_key(key: str) -> None:
    """ValueError when ``key`` (HOOK_DASK_KEY) is missing or not a Fernet key."""
    if not key:
        raise ValueError("not set")
    _dask_task.check_key(key)


GATEWAY_TOKEN = "HOOK_DASK_GATEWAY_TOKEN"


def connect_gateway(
    url: str, *, workers: int, key: str
) -> tuple[Callable[[], Any], Callable[[], None]]:
    """A ``connect`` (and its ``close``) for :class:`DaskExecutor`: a new cluster of the Dask
    Gateway at ``url``, scaled to ``workers``, and a Client of it.

    Auth (ours): with ``HOOK_DASK_GATEWAY_TOKEN`` set (a DESP access token, as DEDL's gateway
    takes it), every request carries ``Authorization: Bearer <token>``, as DEDL's own client
    (``dedl_stack_client.authn.DaskOIDC``) sends it; without it, dask_gateway's configured auth
    (``gateway.auth.type`` in the Dask config: kerberos, jupyterhub, basic). When the gateway's
    cluster options have an ``environment`` field, the workers get ``HOOK_DASK_KEY`` through it
    (the gateway's authenticated API, not the task graph)."""
    state: dict[str, Any] = {}

    def gateway() -> Any:
        if "gateway" not in state:
            from dask_gateway import Gateway

            state["gateway"] = Gateway(url, auth=_gateway_auth())
        return state["gateway"]

    def connect() -> Any:
        if "cluster" not in state:
            options = gateway().cluster_options()
            with contextlib.suppress(AttributeError, KeyError, TypeError, ValueError):
                if "environment" in options:
                    options["environment"] = {
                        **dict(options["environment"] or {}),
                        _dask_task.KEY_VARIABLE: key,
                    }
            cluster = gateway().new_cluster(options)
            cluster.scale(workers)
            state["cluster"] = cluster
        return state["cluster"].get_client(set_as_default=False)

    def close() -> None:
        cluster = state.pop("cluster", None)
        if cluster is not None:
            cluster.shutdown()
        if "gateway" in state:
            state.pop("gateway").close()

    return connect, close


def _gateway_auth() -> Any:
    token = os.environ.get(GATEWAY_TOKEN)
    if not token:
        return None  # dask_gateway's own configuration decides
    from dask_gateway.auth import GatewayAuth

    class BearerToken(GatewayAuth):
        def pre_request(self, resp: Any) -> tuple[dict[str, str], None]:
            return {"Authorization": f"Bearer {token}"}, None

    return BearerToken()


if __name__ == "__main__":  # python -m hook_processor.service.dask_executor: a new HOOK_DASK_KEY
    print(_dask_task.new_key())
