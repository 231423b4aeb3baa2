"""Test support: ``hook-processor serve`` started as a user starts it (a child process), its one
``--json`` start-up line read, stopped with a signal; the ``order`` command run the same way."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import requests
from service_support import password_grant

REPO_ROOT = Path(__file__).resolve().parents[2]
HELLO_WORLD = REPO_ROOT / "examples" / "hello_world"
SAMPLE = HELLO_WORLD / "sample" / "input" / "example.data"
START_KEYS = {"token_url", "service_root", "s3_endpoint", "s3_access_key", "s3_secret_key"}


def hook_processor_command() -> list[str]:
    """The installed console script next to this interpreter (else ``python -m``)."""
    script = Path(sys.executable).parent / "hook-processor"
    return [str(script)] if script.exists() else [sys.executable, "-m", "hook_processor"]


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(("AWS_", "HOOK_"))}
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    env.update(extra or {})
    return env


class Served:
    """A running ``hook-processor serve --json --port 0``."""

    def __init__(
        self,
        args: Sequence[str],
        data_dir: Path,
        *,
        timeout: float = 60.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.stderr_path = data_dir.parent / f"{data_dir.name}-serve-{time.time_ns()}.log"
        self._stderr = self.stderr_path.open("w")
        self.argv = [
            *hook_processor_command(),
            "serve",
            *args,
            "--json",
            "--port",
            "0",
            "--data-dir",
            str(data_dir),
        ]
        self.proc = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=child_env(env),
            start_new_session=True,  # a signal to it is ours alone, not the test runner's
        )
        lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, args=(lines,), daemon=True)
        self._reader.start()
        self.stdout_lines: list[str] = []
        try:
            first = lines.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            raise AssertionError(
                f"serve printed nothing in {timeout} s:\n{self.stderr()}"
            ) from None
        if not first:
            self.proc.wait(10)
            raise AssertionError(f"serve exited {self.proc.returncode}:\n{self.stderr()}")
        self.info: dict[str, Any] = json.loads(first)
        self.token_url: str = self.info["token_url"]
        self.root: str = self.info["service_root"]
        self.s3_endpoint: str = self.info["s3_endpoint"]

    def _read(self, lines: queue.Queue[str]) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.stdout_lines.append(line)
            lines.put(line)
        lines.put("")

    def stderr(self) -> str:
        if not self._stderr.closed:
            self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def stop(
        self, sig: int = signal.SIGINT, timeout: float = 60.0, *, as_terminal: bool = False
    ) -> int:
        """Signal serve and wait for its exit code. ``as_terminal``: as a terminal's Ctrl-C does,
        to the whole process group (serve and the items' children), twice (an impatient user)."""
        if as_terminal:
            os.killpg(self.proc.pid, sig)
            time.sleep(0.3)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
        else:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"serve did not stop in {timeout} s:\n{self.stderr()}") from None
        self._close()
        return code

    def _close(self) -> None:
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self._close()

    # --- the API, as a client ----------------------------------------------------------------

    def token(self, user: str = "alice", password: str = "pw-local") -> str:
        return password_grant(self.token_url, user, password)

    def headers(self) -> dict[str, str]:
        return {"Authorization": "Bearer " + self.token()}

    def submit(self, body: Mapping[str, Any]) -> int:
        answer = requests.post(
            self.root + "BatchOrder/OData.CSC.Order", json=body, headers=self.headers(), timeout=30
        )
        assert answer.status_code == 201, answer.text
        order_id: int = answer.json()["value"]["Id"]
        return order_id

    def products(self, order_id: int) -> list[dict[str, Any]]:
        answer = requests.get(
            f"{self.root}BatchOrder({order_id})/Products", headers=self.headers(), timeout=30
        )
        assert answer.status_code == 200, answer.text
        value: list[dict[str, Any]] = answer.json()["value"]
        return value

    def wait_for(self, order_id: int, statuses: set[str], timeout: float = 90.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        while True:
            items = self.products(order_id)
            if items and all(i["Status"] in statuses for i in items):
                return items
            if time.monotonic() > deadline:
                raise AssertionError(f"order {order_id}: {items} after {timeout} s")
            time.sleep(0.1)

    def s3_client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.s3_endpoint,
            aws_access_key_id=self.info["s3_access_key"],
            aws_secret_access_key=self.info["s3_secret_key"],
            region_name="us-east-1",
        )


@contextlib.contextmanager
def serving(args: Sequence[str], data_dir: Path) -> Iterator[Served]:
    served = Served(args, data_dir)
    try:
        yield served
    finally:
        if served.proc.poll() is None:
            served.kill()


def put_input(served: Served, bucket: str = "inputs", text: str | None = None) -> str:
    """``example.data`` in ``s3://<bucket>/dedl_hello_world/input_file_location/`` (what a user
    does with boto3 before ordering); the input's s3 path."""
    s3 = served.s3_client()
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=bucket)
    body = SAMPLE.read_bytes() if text is None else text.encode()
    s3.put_object(Bucket=bucket, Key="dedl_hello_world/input_file_location/example.data", Body=body)
    return f"s3://{bucket}/dedl_hello_world/input_file_location"


def hello_body(served: Served, input_path: str, *, name: str, storage: str = "TEMPORARY") -> dict:
    options = [
        {"Name": "output_storage", "Value": storage},
        {"Name": "source_s3_path", "Value": input_path},
        {"Name": "source_s3_endpoint_url", "Value": served.s3_endpoint},
        {"Name": "source_s3_access_key", "Value": "in-access"},
        {"Name": "source_s3_secret_key", "Value": "in-secret-never-shown"},
    ]
    return {
        "Name": name,
        "WorkflowName": "dedl_hello_world",
        "IdentifierList": ["Custom Hook"],
        "WorkflowOptions": options,
    }


def odp_test_body(name: str, sleep_time: int, priority: int = 50) -> dict[str, Any]:
    return {
        "Name": name,
        "WorkflowName": "odp-test",
        "IdentifierList": [],
        "Priority": priority,
        "WorkflowOptions": [{"Name": "sleep_time", "Value": sleep_time}],
    }
