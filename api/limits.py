"""Inbound rate limits per API key (per client address without one), shared through Redis.

Every request counts against ``RATE_LIMIT_REQUESTS`` per ``RATE_LIMIT_WINDOW``; requests that
create work count against ``SUBMIT_RATE_LIMIT_REQUESTS`` as well. Limits use a sliding-window
counter in Redis (two counters per caller, O(1) per check: a moving window's log cost a binary
search per request), so every API process sees the same counts; if Redis cannot be reached
they hold per process, in memory, until it is back. A refused request gets 429 with
``Retry-After``; every answer carries the ``RateLimit-*`` headers of the limit nearest to
running out.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import redis
from flask import Flask, g, request
from limits import RateLimitItem, RateLimitItemPerSecond
from limits.storage import MemoryStorage, RedisStorage
from limits.strategies import SlidingWindowCounterRateLimiter

from api.auth import current_caller
from api.errors import ApiError
from api.resources import get_settings, resources
from shared.metrics import RATE_LIMIT_HITS

log = logging.getLogger(__name__)

WORK_CREATING = frozenset({
    "sessions.create_session", "sessions.add_round", "session_edits.branch_session",
    "openai_compat.chat_completions",
})
UNLIMITED = frozenset({"health.health", "health.ready"})
RETRY_REDIS_AFTER_S = 5.0
REDIS_ANSWERED = "redis_answered"  # set on ``g`` once the shared limits were read in a request


@dataclass(frozen=True)
class Quota:
    """How much of one limit is left for one caller."""

    limit: int
    remaining: int
    reset_s: int


class InboundLimits:
    """Sliding-window limits in Redis, with a per-process fallback."""

    def __init__(self, client: redis.Redis | None) -> None:
        self._shared = None
        if client is not None:
            storage = RedisStorage("redis://", connection_pool=client.connection_pool)
            self._shared = SlidingWindowCounterRateLimiter(storage)
        self._local = SlidingWindowCounterRateLimiter(MemoryStorage())
        self._redis_down_until = 0.0

    def take(self, item: RateLimitItem, who: str) -> tuple[bool, Quota]:
        """Count one request by ``who`` against ``item``; return whether it may go on."""
        limiter = self._limiter()
        try:
            allowed = limiter.hit(item, who)
            stats = limiter.get_window_stats(item, who)
        except redis.RedisError as error:
            log.warning("rate limits fall back to process memory", extra={"error": str(error)})
            self._redis_down_until = time.monotonic() + RETRY_REDIS_AFTER_S
            return self.take(item, who)
        if limiter is self._shared:
            g.setdefault(REDIS_ANSWERED, True)
        reset_s = max(0, math.ceil(stats.reset_time - time.time()))
        return allowed, Quota(item.amount, stats.remaining, reset_s)

    @property
    def degraded(self) -> bool:
        """Return whether limits are counted per process right now."""
        return self._shared is None or time.monotonic() < self._redis_down_until

    def _limiter(self) -> SlidingWindowCounterRateLimiter:
        return self._local if self.degraded else self._shared


def init_app(app: Flask) -> None:
    """Check the limits after the caller is known; add the headers to every answer."""
    app.before_request(_check)
    app.after_request(_headers)


def _check() -> None:
    if request.endpoint in UNLIMITED or request.endpoint is None:
        return
    settings = get_settings()
    limits = resources().limits
    who = _who()
    checks = [("requests", RateLimitItemPerSecond(settings.rate_limit_requests,
                                                  settings.rate_limit_window_s))]
    if request.endpoint in WORK_CREATING and request.method == "POST":
        checks.append(("submissions", RateLimitItemPerSecond(
            settings.submit_rate_limit_requests, settings.rate_limit_window_s)))
    for scope, item in checks:
        allowed, quota = limits.take(item, f"{scope}:{who}")
        g.quota = min(getattr(g, "quota", quota), quota, key=lambda q: q.remaining)
        if not allowed:
            RATE_LIMIT_HITS.labels(scope=scope).inc()
            raise ApiError(429, "rate_limited", f"too many {scope}; slow down",
                           headers={"Retry-After": str(max(1, quota.reset_s)),
                                    **_quota_headers(quota)})


def _who() -> str:
    caller = current_caller()
    return f"key:{caller.key_id}" if caller.key_id else f"ip:{request.remote_addr}"


def _headers(response):
    quota = getattr(g, "quota", None)
    if quota is not None:
        response.headers.update(_quota_headers(quota))
    return response


def _quota_headers(quota: Quota) -> dict[str, str]:
    return {"RateLimit-Limit": str(quota.limit), "RateLimit-Remaining": str(quota.remaining),
            "RateLimit-Reset": str(quota.reset_s)}
