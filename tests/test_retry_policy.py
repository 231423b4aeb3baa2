"""The one retry policy of the lean and obstore engines (hook_processor/_s3/retry.py)."""

from __future__ import annotations

import pytest

from hook_processor._s3.retry import RetryPolicy


def _run(policy: RetryPolicy, status: int, code: str) -> tuple[int, bool]:
    """Attempts made for a request answered (status, code) every time, and whether the
    policy said it gave up on a retryable error."""
    attempts = policy.attempts()
    while True:
        attempts.start()
        if attempts.after_answer(status, code) is None:
            return attempts.attempt, attempts.gave_up_retrying


@pytest.mark.parametrize(
    ("status", "code", "made", "gave_up"),
    [
        (500, "InternalError", 5, True),
        (503, "ServiceUnavailable", 5, True),
        (400, "RequestTimeout", 5, True),
        (404, "NoSuchKey", 1, False),  # final: never retried
        (403, "AccessDenied", 1, False),
    ],
)
def test_answers_are_retried_up_to_max_attempts_when_transient(
    status: int, code: str, made: int, gave_up: bool
) -> None:
    assert _run(RetryPolicy(5, 0.0), status, code) == (made, gave_up)


def test_throttling_is_retried_for_its_time_budget_then_by_attempts() -> None:
    attempts = RetryPolicy(3, throttle_seconds=60.0).attempts()
    waits = []
    for _ in range(10):  # well past max_attempts: the budget, not the count, decides
        attempts.start()
        wait = attempts.after_answer(503, "SlowDown")
        assert wait is not None
        waits.append(wait)
    assert attempts.attempt == 10 and all(w >= 0 for w in waits)


@pytest.mark.parametrize(
    ("kind", "made"), [("certificate", 1), ("refused", 3), ("unresolved", 3), (None, 5)]
)
def test_connection_failures(kind: str | None, made: int) -> None:
    attempts = RetryPolicy(5, 0.0).attempts()
    while True:
        attempts.start()
        wait = attempts.after_failure(kind, timeout=False)
        if wait is None:
            break
        assert wait < 25
    assert attempts.attempt == made


def test_the_retry_quota_is_shared_by_the_requests_of_one_engine() -> None:
    # 500 tokens, 5 a retry: a store that answers 500 to everything gets 100 retries in all from
    # one engine, not 4 per request for every request (botocore's standard mode).
    policy = RetryPolicy(5, 0.0)
    made = [_run(policy, 500, "InternalError")[0] for _ in range(40)]
    assert sum(m - 1 for m in made) == 100
    assert made[0] == 5 and made[-1] == 1
    one = policy.attempts()  # a success gives a token back
    one.start()
    one.succeeded()
    assert policy._quota == 1
