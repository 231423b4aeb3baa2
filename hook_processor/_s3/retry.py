"""The retry policy of the engines that send their own requests (lean, obstore): one, so that
the two cannot drift apart (they had: only the lean engine kept botocore's retry quota).

It follows botocore's "standard" mode (botocore/retries/standard.py), with our two additions:

* an answer: transient statuses (500, 502, 503, 504) and codes are retried with jittered
  exponential backoff (at most 20 s) up to ``max_attempts`` attempts; throttling
  (``transfer.THROTTLING_CODES``) for a time budget of ``throttle_seconds`` instead of a number
  of attempts (ours: a store that sheds load for a minute should not fail a 4 GiB staging);
* a connection that failed: a refused connection or an unknown host gets a few quick attempts
  (ours: ``transfer.UNREACHABLE_ATTEMPTS``, the cause is usually final), a certificate that does
  not verify none, anything else (reset, timeout) the backoff of an answer;
* a retry quota per engine: 500 tokens, 5 for a retry, 10 for a retry after a timeout, 1 back
  for each success, so that a store that is down is not hammered by every thread at once.
"""

from __future__ import annotations

import random
import threading
import time

from hook_processor._s3.transfer import (
    THROTTLING_CODES,
    UNREACHABLE_ATTEMPTS,
    throttle_wait,
    throttled,
    unreachable_delay,
)

TRANSIENT_STATUS = frozenset({500, 502, 503, 504})
TRANSIENT_CODES = frozenset(
    {"RequestTimeout", "RequestTimeoutException", "PriorRequestNotComplete"}
)
# botocore's throttled codes are THROTTLING_CODES (retried for a time budget here) plus one it
# retries by attempts, as the transient ones (PriorRequestNotComplete is in TRANSIENT_CODES).
_BY_ATTEMPTS = TRANSIENT_CODES | THROTTLING_CODES | {"TransactionInProgressException"}
MAX_BACKOFF = 20.0
_QUOTA = 500
_RETRY_COST = 5
_TIMEOUT_COST = 10


class RetryPolicy:
    """One engine's policy and its retry quota (module doc); ``attempts()`` for each request."""

    def __init__(self, max_attempts: int, throttle_seconds: float) -> None:
        self.max_attempts = max(1, int(max_attempts))
        self.throttle_seconds = float(throttle_seconds)
        self._quota = _QUOTA
        self._lock = threading.Lock()

    def attempts(self) -> Attempts:
        return Attempts(self)

    def _take(self, cost: int) -> bool:
        with self._lock:
            if self._quota < cost:
                return False
            self._quota -= cost
            return True

    def _refund(self) -> None:
        if self._quota < _QUOTA:
            with self._lock:
                self._quota = min(_QUOTA, self._quota + 1)


class Attempts:
    """The attempts of one request: ``start()`` before each, then ``succeeded()``, or the wait
    before the next one from ``after_answer`` / ``after_failure`` (None: give up, raise)."""

    def __init__(self, policy: RetryPolicy) -> None:
        self._policy = policy
        self.attempt = 0
        self._throttled_since: float | None = None
        self.gave_up_retrying = False  # the error was retryable, the attempts ran out

    @property
    def retries(self) -> int:
        return max(0, self.attempt - 1)

    def start(self) -> int:
        self.attempt += 1
        return self.attempt

    def succeeded(self) -> None:
        self._policy._refund()

    def after_answer(self, status: int, code: str) -> float | None:
        """The wait before retrying an error answer, or None."""
        if throttled(status, code):  # a time budget, not attempts (transfer.py)
            if self._throttled_since is None:
                self._throttled_since = time.monotonic()
            wait = throttle_wait(self._throttled_since, self.attempt, self._policy.throttle_seconds)
            if wait is not None:
                return wait
        retryable = status in TRANSIENT_STATUS or code in _BY_ATTEMPTS
        if not retryable:
            return None
        if self.attempt < self._policy.max_attempts and self._policy._take(_RETRY_COST):
            return self._backoff()
        self.gave_up_retrying = True
        return None

    def after_failure(self, kind: str | None, timeout: bool) -> float | None:
        """The wait before retrying a request whose connection failed (``kind``:
        ``transfer.cause``), or None."""
        if kind == "certificate":  # the same certificate next time: no retry
            return None
        if kind in ("refused", "unresolved"):  # answered at once: a few quick attempts
            if self.attempt < min(
                self._policy.max_attempts, UNREACHABLE_ATTEMPTS
            ) and self._policy._take(_RETRY_COST):
                return unreachable_delay(self.attempt)
            return None
        cost = _TIMEOUT_COST if timeout else _RETRY_COST
        if self.attempt < self._policy.max_attempts and self._policy._take(cost):
            return self._backoff()
        return None

    def _backoff(self) -> float:
        return random.random() * min(2.0 ** (self.attempt - 1), MAX_BACKOFF)
