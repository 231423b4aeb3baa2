"""A burst of 503 SlowDown does not fail a run; a run that fails reports the retries it made.

Before, a request's retries were counted in attempts (HOOK_S3_MAX_ATTEMPTS) with full-jitter
backoff, so its whole retry window could end inside a 2-second throttling burst; and a failed
result said ``Retries: 0`` whatever had been retried. Throttling answers now get a time budget
(HOOK_S3_THROTTLE_SECONDS, default 60 s) on both engines.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest
import test_reliability as rel
from fault_proxy import FaultProxy, Rule
from test_reliability import HELLO_PREFIX, get, order_env, put_objects, run

from hook_processor.errors import ExitCode

ENGINES = ["lean", "boto3"]
s3, buckets = rel.s3, rel.buckets  # its fixtures


@pytest.fixture
def proxy(s3_server) -> Iterator[FaultProxy]:  # type: ignore[no-untyped-def]
    with FaultProxy(upstream=s3_server.endpoint_url) as p:
        yield p


def env_through(proxy, s3_server, buckets, tmp_path, **extra):  # type: ignore[no-untyped-def]
    in_bucket, out_bucket = buckets
    return order_env(
        s3_server,
        tmp_path / "work",
        source=f"s3://{in_bucket}/{HELLO_PREFIX}",
        output=f"s3://{out_bucket}/run",
        input_endpoint=proxy.endpoint_url,
        output_endpoint=proxy.endpoint_url,
        HOOK_S3_MAX_ATTEMPTS="2",  # one retry by count: well inside a 2 s burst
        **extra,
    )


@pytest.mark.parametrize("engine", ENGINES)
def test_a_two_second_burst_of_slowdown_on_every_request_does_not_fail_the_run(
    s3_server, s3, buckets, proxy, tmp_path, engine
) -> None:
    in_bucket, out_bucket = buckets
    put_objects(s3, in_bucket, {HELLO_PREFIX + "example.data": b"throttled\n"})
    burst = proxy.add_rule(Rule(fault="status", status=503, code="SlowDown"))
    ends = threading.Timer(2.0, proxy.remove_rule, args=(burst,))
    ends.start()
    try:
        result = run(env_through(proxy, s3_server, buckets, tmp_path, HOOK_S3_ENGINE=engine))
    finally:
        ends.cancel()

    assert result.exit_code == ExitCode.COMPLETED, result.status_message
    assert burst.fired >= 2  # the burst was met, and outlasted
    assert result.retries >= burst.fired  # every SlowDown answered was retried and counted
    assert get(s3, out_bucket, "run/example.data") == b"THROTTLED\n"
    written = json.loads((tmp_path / "work" / "result.json").read_text())
    assert written["Retries"] == result.retries


@pytest.mark.parametrize("engine", ENGINES)
def test_a_failed_run_reports_the_retries_it_made(
    s3_server, s3, buckets, proxy, tmp_path, engine
) -> None:
    in_bucket, _ = buckets
    put_objects(s3, in_bucket, {HELLO_PREFIX + "example.data": b"x"})
    rule = proxy.add_rule(Rule(fault="status", status=503, code="SlowDown"))
    env = env_through(
        proxy, s3_server, buckets, tmp_path, HOOK_S3_ENGINE=engine, HOOK_S3_THROTTLE_SECONDS="1"
    )

    result = run(env)

    assert result.exit_code == ExitCode.STAGING_FAILED
    assert "SlowDown" in result.status_message
    assert rule.fired >= 2
    written = json.loads((tmp_path / "work" / "result.json").read_text())
    assert written["Retries"] == rule.fired - 1  # all but the first answer were retries
