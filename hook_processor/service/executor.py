"""One order item = one run of the runtime, through the harness's modes layer.

:meth:`Executor.run` builds a :class:`~hook_processor._modes.PreparedRun` the way the platform
would start a container: the item's options as environment variables
(:func:`~hook_processor.service.workflows.option_env`), ``HOOK_WORK_DIR`` and
``HOOK_RESULT_PATH`` under ``<data_dir>/items/<item id>/``, the order context (``HOOK_ORDER_ID``,
``HOOK_ORDER_NAME``, ``HOOK_WORKFLOW_NAME``, ``HOOK_PRIORITY``, ``HOOK_IDENTIFIERS``) and the
service's S3 as the temporary storage (``HOOK_TEMPORARY_S3_*``). Nothing is uploaded: the order
names its input. Then the mode's preparation (the runtime's own check, the image) and the mode.
The item's log (every attempt, appended) is ``<data_dir>/items/<item id>/log.txt``.

What is ours:

- ``HOOK_ORDER_ID`` is the item's Id (the ProductionOrder's Id): stable across reruns, so the
  runtime recognises a rerun of a published item (complete-or-nothing publication, see
  ``storage.claim_output``), and the TEMPORARY zip is named ``<day>_<item Id>_<random>.zip``, as
  the live service's ``20240902_34079_v3wQnhFs.zip`` carries its item's Id.
- Modes: a project folder runs in the service's ``--mode``; an image always in a container;
  ``odp-test`` always in a subprocess (``hook-processor exec`` of the built-in processor, see
  :mod:`hook_processor.service._odp_test`): it has no project and no image, and only a child
  process can be stopped in the middle of its sleep. Its input is a small JSON file the executor
  writes to ``s3://hook-input/odp-test/<item id>/`` (the runtime needs an input).
- The default mode of ``serve`` is ``subprocess``: each item gets its own process with only a
  container's environment (as the service's pods), it can be cancelled at any moment (SIGTERM,
  exit 6), and items run in parallel safely; it needs no Docker engine.
- In-process runs are serialised (one at a time, whatever ``--concurrency``; the order service
  starts one worker, :attr:`Executor.max_concurrency`, and a lock guards the rest): a run swaps
  ``sys.path``/``sys.modules`` (``isolated_imports``) and puts its log handler, with its secrets'
  redactor, on the root logger; two at once would run each other's modules and write each
  other's records, unredacted, into their logs. A cancel stops an in-process run's transfers at
  once, but ``process()`` itself only when it returns (Python cannot interrupt another thread;
  signal handlers run in the main thread only): then exit 6, nothing published.
- Cancel: ``cancel`` set -> the mode's forward gets SIGTERM (subprocess: to the child; container:
  to the container), as a platform stopping a pod; the runtime ends with exit 6.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from hook_processor import _interrupt
from hook_processor.errors import Cancelled, ExitCode, HookProcessorError
from hook_processor.s3server import S3Server
from hook_processor.service.workflows import ODP_TEST, Storage, Workflow, option_env

MODES = ("inprocess", "subprocess", "container")
DEFAULT_MODE = "subprocess"
INPUT_BUCKET = "hook-input"
LOG_NAME = "log.txt"
RESULT_NAME = "result.json"

# One in-process run at a time in this process (see the module doc).
_INPROCESS = threading.Lock()


@dataclasses.dataclass(frozen=True)
class ItemRun:
    """One order item to run: its options as posted (secrets included; the PRIVATE prefix of a
    multi-item order already made per item by the order service)."""

    item_id: int
    order_id: int
    order_name: str
    workflow: Workflow
    options: list[dict[str, Any]]
    identifier: str | None
    priority: int
    attempt: int = 1


class NotRun(Exception):
    """The executor could not hand the item over (its cluster does not answer): nothing ran,
    the order service puts the item back in the queue."""


class _Interrupt(_interrupt.Interrupt):
    """A cancel from another thread, not a signal: never raises there. A forward registered
    after the cancel came gets it at once (the mode started while the cancel was on its way)."""

    def handle(self, signum: int, _frame: object = None) -> None:
        with contextlib.suppress(KeyboardInterrupt, Cancelled):
            # In-process, the runtime's handler raises Cancelled in the caller: here, this
            # thread, not the run's; the run notices the event itself.
            super().handle(signum, _frame)

    @contextlib.contextmanager
    def forwarding(self, forward: _interrupt.Forward) -> Iterator[None]:
        with super().forwarding(forward):
            if self.event.is_set():
                with contextlib.suppress(Cancelled):
                    forward(signal.SIGTERM, 1)
            yield


class Executor:
    """Runs order items on this machine, in a harness mode (see the module doc)."""

    def __init__(
        self,
        *,
        mode: str,
        s3: S3Server,
        data_dir: Path,
        mode_options: Mapping[str, Any] | None = None,
    ) -> None:
        from hook_processor.errors import OptionsError

        if mode not in MODES:
            raise OptionsError(f"--mode {mode}: unknown mode; choose one of {', '.join(MODES)}")
        self.mode = mode
        self.s3 = s3
        self.data_dir = Path(data_dir).resolve()
        self.mode_options = dict(mode_options or {})
        self.storage = Storage(s3.endpoint_url, s3.access_key, s3.secret_key)
        self._buckets_ready = False

    @property
    def max_concurrency(self) -> int | None:
        """Items this executor can run at once (None: as many as asked): in-process runs one at a
        time (see the module doc), so that an item is ``in_progress`` only while it runs."""
        return 1 if self.mode == "inprocess" else None

    def available(self) -> bool:
        """Whether an item claimed now can run (this machine: always; a cluster: while its
        scheduler answers). The order service claims nothing while it is not."""
        return True

    def close(self) -> None:
        """Let go of what the executor holds (nothing here; a cluster's client)."""

    def item_dir(self, item_id: int) -> Path:
        return self.data_dir / "items" / str(item_id)

    def log_path(self, item_id: int) -> Path:
        return self.item_dir(item_id) / LOG_NAME

    def run(self, item: ItemRun, cancel: threading.Event) -> dict[str, Any]:
        """Run the item once; the runtime's result JSON (``ExitCode`` and ``Status`` in it).
        Never raises for a failed run: a problem becomes a failed result with its message."""
        item_dir = self.item_dir(item.item_id)
        work_dir = item_dir / "work"
        result_path = item_dir / RESULT_NAME
        item_dir.mkdir(parents=True, exist_ok=True)
        # A rerun starts from an empty work folder (its output is republished, or recognised).
        shutil.rmtree(work_dir, ignore_errors=True)
        result_path.unlink(missing_ok=True)
        return self.logged_attempt(
            item, "", lambda log: self._run(item, cancel, work_dir, result_path, log)
        )

    def logged_attempt(
        self, item: ItemRun, where: str, attempt: Callable[[IO[str]], dict[str, Any]]
    ) -> dict[str, Any]:
        """One attempt of ``item`` framed in its log: a line before (``where``: "" or "on ...,
        "), one after with its exit. A HookProcessorError of the mode (no engine, no image) is a
        failed result with its code; any other exception is a bug of ours, its traceback kept in
        the log; NotRun goes up (nothing ran: the item goes back to the queue)."""
        with open(self.log_path(item.item_id), "a", encoding="utf-8", buffering=1) as log:
            log.write(
                f"hook-processor serve: item {item.item_id} of order {item.order_id} "
                f"({item.workflow.name}), attempt {item.attempt}, {where}"
                f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n"
            )
            try:
                result = attempt(log)
            except NotRun:
                raise
            except HookProcessorError as exc:
                result = _failed(exc.exit_code, str(exc))
            except Exception as exc:  # a bug of ours: kept in the item's log
                import traceback

                log.write(traceback.format_exc())
                result = _failed(
                    ExitCode.INTERNAL_ERROR, f"internal error in hook-processor serve: {exc!r}"
                )
            log.write(
                f"hook-processor serve: item {item.item_id} ended: exit {result.get('ExitCode')}, "
                f"{result.get('Status')}\n"
            )
        return result

    def _mode_of(self, workflow: Workflow) -> tuple[str, dict[str, Any]]:
        if workflow.image is not None:
            return "container", {**self.mode_options, "image": workflow.image}
        if workflow.name == ODP_TEST and workflow.source.startswith("builtin:"):
            return "subprocess", {}
        return self.mode, dict(self.mode_options)

    def _run(
        self,
        item: ItemRun,
        cancel: threading.Event,
        work_dir: Path,
        result_path: Path,
        log: IO[str],
    ) -> dict[str, Any]:
        from hook_processor import _modes, _preflight

        mode, mode_options = self._mode_of(item.workflow)
        env = self._environment(item, work_dir, result_path)
        interrupt = _Interrupt()
        prepared = _modes.PreparedRun(
            mode=mode,
            project_dir=item.workflow.project_dir,
            env=env,
            environ=dict(os.environ),  # PATH, HOME, proxy and CA variables (container_environment)
            work_dir=work_dir,
            result_path=result_path,
            endpoint_url=self.s3.endpoint_url,
            log_stream=log,
            mode_options=mode_options,
            interrupt=interrupt,
        )
        stop_watch = threading.Event()

        def watch() -> None:
            while not stop_watch.is_set():
                if cancel.wait(0.1):
                    interrupt.handle(signal.SIGTERM)
                    return

        watcher = threading.Thread(target=watch, name=f"cancel-{item.item_id}", daemon=True)
        watcher.start()
        lock = _INPROCESS if mode == "inprocess" else contextlib.nullcontext()
        try:
            with lock:
                if cancel.is_set():
                    return _cancelled("cancelled before the run started; nothing was published")
                self.ensure_buckets()
                if item.workflow.name == ODP_TEST and item.workflow.source.startswith("builtin:"):
                    self._odp_test_input(item)
                work_dir.mkdir(parents=True, exist_ok=True)
                try:
                    with _modes.resolve_preparation(mode)(prepared) as ready:
                        if cancel.is_set():  # the item was in_progress: it was being prepared
                            return _cancelled(
                                "cancelled while the run was being prepared, before the "
                                "processor started; nothing was published"
                            )
                        done = _modes.resolve_mode(mode)(ready)
                except _preflight.Refused as refused:
                    log.write(f"{refused}\n")
                    return _failed(ExitCode.BAD_OPTIONS, str(refused))
        finally:
            stop_watch.set()
            watcher.join()
        result = done.result or _modes._read_result(result_path)
        if result is None:
            return _failed(
                done.exit_code,
                f"the run ended with exit code {done.exit_code} without writing a result; "
                "see its log",
            )
        result["ExitCode"] = done.exit_code  # the process's own word, as the platform sees it
        return result

    def _environment(self, item: ItemRun, work_dir: Path, result_path: Path) -> dict[str, str]:
        workflow = item.workflow
        env = option_env(
            workflow,
            item.options,
            self.storage,
            odp_test_input=f"s3://{INPUT_BUCKET}/odp-test/{item.item_id}/",
        )
        env.update(
            HOOK_WORK_DIR=str(work_dir),
            HOOK_RESULT_PATH=str(result_path),
            HOOK_ORDER_ID=str(item.item_id),
            HOOK_ORDER_NAME=item.order_name,
            HOOK_WORKFLOW_NAME=workflow.name,
            HOOK_PRIORITY=str(item.priority),
            HOOK_IDENTIFIERS=json.dumps([item.identifier] if item.identifier is not None else []),
        )
        if workflow.project_dir is not None:
            env["HOOK_PROJECT_DIR"] = str(workflow.project_dir)
        if workflow.entrypoint is not None:
            env["HOOK_ENTRYPOINT"] = workflow.entrypoint
        return env

    def ensure_buckets(self) -> None:
        """The temporary storage's bucket (and odp-test's input bucket) on the service's S3."""
        from hook_processor import _harness_io

        if self._buckets_ready:
            return
        client = self.s3.client()
        for bucket in (self.storage.temporary_bucket, INPUT_BUCKET):
            _harness_io.ensure_bucket(client, bucket, self.s3.endpoint_url)
        self._buckets_ready = True

    def _odp_test_input(self, item: ItemRun) -> None:
        body = json.dumps(
            {"order_id": item.order_id, "item_id": item.item_id, "identifier": item.identifier}
        ).encode()
        self.s3.client().put_object(
            Bucket=INPUT_BUCKET, Key=f"odp-test/{item.item_id}/order.json", Body=body
        )


def _failed(code: int, message: str) -> dict[str, Any]:
    return {
        "Status": "failed" if code != ExitCode.CANCELLED else "cancelled",
        "StatusMessage": message,
        "ExitCode": int(code),
        "Products": [],
    }


def _cancelled(message: str) -> dict[str, Any]:
    return _failed(ExitCode.CANCELLED, message)
