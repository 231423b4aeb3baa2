"""A bounded soak (issue 6): many hello_world runs in-process through a lightly faulty proxy.

Every run must complete with the right output, and a process that runs hook-processor many
times must not accumulate temporary files, threads or open file descriptors. Marked ``soak``;
it runs in CI by default with small numbers (HOOK_SOAK_RUNS, default 100: about 35 s on a
2-core box, most of each run being the creation of its boto3 client).
"""

from __future__ import annotations

import gc
import os
import threading
import uuid
from pathlib import Path

import pytest

from hook_processor import runtime
from hook_processor.errors import ExitCode
from hook_processor.options import OptionSources

try:
    from fault_proxy import FaultProxy, Rule
except ImportError:  # tests/ became a package
    from tests.fault_proxy import FaultProxy, Rule  # type: ignore[no-redef]

HELLO_WORLD = Path(__file__).resolve().parent.parent / "examples" / "hello_world"
PREFIX = "dedl_hello_world/input_file_location/"
INPUTS = {"example.data": b"hello, world\n", "sub/notes.txt": "soak ünïcode\n".encode()}
EXPECTED = {rel: data.decode().upper().encode() for rel, data in INPUTS.items()}
RUNS = int(os.environ.get("HOOK_SOAK_RUNS", "100"))


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def settle() -> tuple[int, int]:
    """(open fds, live threads) once garbage (closed clients, finished pools) is collected."""
    gc.collect()
    return open_fds(), threading.active_count()


@pytest.mark.soak
@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")
@pytest.mark.parametrize("engine", ["lean", "boto3", "obstore"])
def test_soak_hello_world_through_a_faulty_proxy(s3_server, s3, tmp_path, capsys, engine) -> None:
    in_bucket, out_bucket = f"soak-in-{uuid.uuid4().hex[:8]}", f"soak-out-{uuid.uuid4().hex[:8]}"
    for name in (in_bucket, out_bucket):
        s3.create_bucket(Bucket=name)
    for rel, data in INPUTS.items():
        s3.put_object(Bucket=in_bucket, Key=PREFIX + rel, Body=data)
    work = tmp_path / "work"  # one work dir for every run: each run empties its own folders

    with FaultProxy(upstream=s3_server.endpoint_url) as proxy:
        # Low rates; throttling backs off (~0.5 s a time), broken bodies are retried at once.
        proxy.add_rule(Rule(fault="status", status=503, code="SlowDown", rate=0.005, seed=11))
        proxy.add_rule(Rule(fault="status", status=500, methods="PUT", rate=0.005, seed=12))
        body = {"methods": "GET", "key_pattern": "/" + PREFIX}
        proxy.add_rule(Rule(fault="reset_after", after_bytes=3, rate=0.01, seed=13, **body))
        proxy.add_rule(Rule(fault="short_body", rate=0.01, seed=14, **body))
        proxy.add_rule(Rule(fault="flip_byte", rate=0.01, seed=15, **body))
        env = {
            "SOURCE_S3_ENDPOINT_URL": proxy.endpoint_url,
            "SOURCE_S3_PATH": f"s3://{in_bucket}/{PREFIX}",
            "SOURCE_S3_ACCESS_KEY": s3_server.access_key,
            "SOURCE_S3_SECRET_KEY": s3_server.secret_key,
            "OUTPUT_S3_ACCESS_KEY": s3_server.access_key,
            "OUTPUT_S3_SECRET_KEY": s3_server.secret_key,
            "HOOK_WORK_DIR": str(work),
            "HOOK_S3_ENGINE": engine,
        }

        def one(i: int) -> runtime.RunResult:
            sources = OptionSources(env={**env, "OUTPUT_S3_PATH": f"s3://{out_bucket}/r{i}"})
            try:
                return runtime.run(sources, project_dir=HELLO_WORLD)
            finally:
                capsys.readouterr()  # drop the run's log

        one(-1)  # warm-up: imports, botocore's caches, the proxy's first connections
        fds, threads = settle()
        retries = 0
        for i in range(RUNS):
            result = one(i)
            assert result.exit_code == ExitCode.COMPLETED, f"run {i}: {result.status_message}"
            retries += result.retries
            published = {
                rel: s3.get_object(Bucket=out_bucket, Key=f"r{i}/{rel}")["Body"].read()
                for rel in INPUTS
            }
            assert published == EXPECTED
        fds_after, threads_after = settle()
        faults = len(proxy.events)

    assert faults > 0 and retries >= faults  # the faults happened and were all retried
    assert [p for p in work.rglob("*") if ".hookpart-" in p.name or ".result-" in p.name] == []
    assert sorted(p.name for p in work.iterdir()) == [
        ".hook-processor-workdir",
        "input",
        "output",
        "result.json",
    ]
    # A leak of one per run would be RUNS; a few are allowed for lazily created pools and caches.
    assert fds_after <= fds + 4, (fds, fds_after)
    assert threads_after <= threads + 2, (threads, threads_after)
