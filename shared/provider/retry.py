"""The one retry policy of provider calls.

Only transient errors are retried (``shared.provider.errors``: timeouts, connection errors,
408/409/425/429/5xx, an error inside an HTTP 200 body); permanent errors and calls that were never
made are raised at once. The wait before a retry is full jitter (uniform between zero and an
exponentially growing cap), never shorter than the provider's ``Retry-After``. Retries stop after
the configured attempts, or as soon as the next attempt could not start before the caller's
deadline. Nothing else retries a provider call: the HTTP transport does not, the worker's task
does not.
"""

from __future__ import annotations

import logging
import time

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from shared.provider.errors import TransientError

log = logging.getLogger(__name__)

BACKOFF_FIRST_S = 0.5  # the first retry waits up to this long; each later one up to twice more
BACKOFF_MAX_S = 20.0


class wait_retry_after(wait_base):  # noqa: N801 - named like tenacity's own parts
    """Wait as ``jitter`` says, but never less than the failed attempt's ``Retry-After``."""

    def __init__(self, jitter: wait_base) -> None:
        self.jitter = jitter

    def __call__(self, retry_state: RetryCallState) -> float:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        floor = getattr(error, "retry_after", None) or 0.0
        return max(floor, self.jitter(retry_state))


class stop_at_deadline(stop_base):  # noqa: N801 - named like tenacity's own parts
    """Stop when the next attempt would start at or after ``deadline`` (``time.monotonic``)."""

    def __init__(self, deadline: float | None) -> None:
        self.deadline = deadline

    def __call__(self, retry_state: RetryCallState) -> bool:
        if self.deadline is None:
            return False
        return time.monotonic() + retry_state.upcoming_sleep >= self.deadline


def _log_retry(retry_state: RetryCallState) -> None:
    error = retry_state.outcome.exception() if retry_state.outcome else None
    log.info("retrying a provider call", extra={
        "attempt": retry_state.attempt_number, "wait_s": round(retry_state.upcoming_sleep, 3),
        "error": str(error),
    })


PROVIDER_RETRY = AsyncRetrying(
    retry=retry_if_exception_type(TransientError),
    wait=wait_retry_after(wait_random_exponential(multiplier=BACKOFF_FIRST_S, max=BACKOFF_MAX_S)),
    stop=stop_after_attempt(3),
    before_sleep=_log_retry,
    reraise=True,
)


def call_retrying(max_attempts: int, deadline: float | None) -> AsyncRetrying:
    """Return ``PROVIDER_RETRY`` for one call, bounded by ``max_attempts`` and ``deadline``.

    Each call gets its own copy: a tenacity object keeps per-run state per thread, and every
    call of a worker process runs on the same thread.
    """
    return PROVIDER_RETRY.copy(stop=stop_after_attempt(max_attempts) | stop_at_deadline(deadline))
