"""Provider calls as the round engine makes them: retried, behind breakers, within shared limits.

Each attempt of a call passes, in order: the deadline (no attempt starts after it), the model's
circuit breaker (an open one skips the call at once), the model's shared pace (rate and
concurrency slots, 429 pauses), and then one HTTP request bounded by the model's timeout and the
deadline. ``PROVIDER_RETRY`` decides whether a failed attempt is followed by another.
"""

from __future__ import annotations

import asyncio
import logging
import time
from urllib.parse import urlsplit

import httpx
import redis
import redis.asyncio

from shared.metrics import LLM_COST, LLM_REQUEST_DURATION, LLM_REQUESTS, LLM_TOKENS
from shared.provider.breaker import FleetBreakers
from shared.provider.client import Completion, ProviderClient
from shared.provider.errors import (
    CircuitOpen,
    ContextLengthExceeded,
    DeadlineReached,
    MalformedResponse,
    NoCallSlot,
    PoolExhausted,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    RequestRejected,
    TransientError,
)
from shared.provider.pace import FleetPace
from shared.provider.retry import call_retrying
from shared.roster import Model
from shared.settings import Settings

log = logging.getLogger(__name__)

HOLD_MARGIN_S = 5.0  # a concurrency slot or trial lease outlives its call's timeout by this much
BREAKER_SOCKET_TIMEOUT_S = 0.5  # breaker bookkeeping is synchronous: never wait long on Redis
PACE_CONNECTIONS = 64
OUTCOMES = {
    ProviderTimeout: "timeout",
    ProviderUnavailable: "unavailable",
    RateLimited: "rate_limited",
    MalformedResponse: "malformed",
    ContextLengthExceeded: "context_length",
    RequestRejected: "rejected",
    PoolExhausted: "pool_exhausted",
    CircuitOpen: "circuit_open",
    NoCallSlot: "no_slot",
    DeadlineReached: "deadline",
}


class ResilientProvider:
    """Ask models through the retry policy, each model's breaker and each model's pace."""

    def __init__(self, client: ProviderClient, breakers: FleetBreakers, pace: FleetPace,
                 max_attempts: int, default_timeout_s: float) -> None:
        self.client = client
        self.breakers = breakers
        self.pace = pace
        self.max_attempts = max_attempts
        self.default_timeout_s = default_timeout_s

    async def complete(
        self, model: Model, messages: list[dict], *, deadline: float | None = None
    ) -> Completion:
        """Ask one model, retrying transient failures; raise the last error when it gives up.

        ``deadline`` is a ``time.monotonic`` value: no attempt starts after it, and an attempt
        still running then fails with ``ProviderTimeout``.
        """
        try:  # most calls succeed at once: spare them the retry policy's setup
            return await self._attempt(model, messages, deadline)
        except TransientError as error:
            first = error
        return await self._retry(model, messages, deadline, first)

    async def _retry(
        self, model: Model, messages: list[dict], deadline: float | None, first: TransientError
    ) -> Completion:
        """Go on as ``PROVIDER_RETRY`` says, with ``first`` as its first failed attempt.

        The policy sees the first failure as its own attempt, so its waits, stops and logs are
        the same as if it had made that attempt itself.
        """
        failures: list[ProviderError] = [first]
        async for attempt in call_retrying(self.max_attempts, deadline):
            with attempt:
                if attempt.retry_state.attempt_number == 1:
                    raise first
                try:
                    return await self._attempt(model, messages, deadline)
                except ProviderError as error:
                    failures.append(error)
                    raise
                except CircuitOpen as error:  # the breaker opened under this call's failures
                    raise CircuitOpen(f"{failures[-1].reason}; then {error.reason}") from error
        raise AssertionError("unreachable: the retry policy returns or raises")

    async def _attempt(
        self, model: Model, messages: list[dict], deadline: float | None
    ) -> Completion:
        if deadline is not None and time.monotonic() >= deadline:
            raise DeadlineReached("the deadline passed before the call could start")
        hold_s = (model.timeout_s or self.default_timeout_s) + HOLD_MARGIN_S
        breaker = self.breakers.for_model(model.id)
        try:
            trial = breaker.admit(hold_s)
        except CircuitOpen as error:
            _count(model, error)
            raise
        try:
            async with self.pace.slot(model, deadline, hold_s):
                with breaker.calling():
                    completion = await self._call(model, messages, deadline)
        except RateLimited as error:
            await self.pace.pause(model.id, error.retry_after)
            _count(model, error)
            raise
        except Exception as error:
            _count(model, error)
            raise
        finally:
            breaker.release(trial)
        _count_success(model, completion)
        return completion

    async def _call(self, model: Model, messages: list[dict], deadline: float | None) -> Completion:
        if deadline is None:
            return await self.client.complete(model, messages)
        try:
            async with asyncio.timeout(deadline - time.monotonic()):
                return await self.client.complete(model, messages, deadline=deadline)
        except TimeoutError as error:
            raise ProviderTimeout("no answer before the deadline") from error

    async def aclose(self) -> None:
        """Close the connections to Redis (the HTTP client belongs to the caller)."""
        await self.pace.aclose()
        self.breakers.close()


def build_provider(settings: Settings, http: httpx.AsyncClient) -> ResilientProvider:
    """Build the provider a worker process uses: shared state in Redis unless it is disabled."""
    client = ProviderClient(http, settings.provider_base_url, settings.openrouter_api_key,
                            settings.provider_timeout_s)
    key = provider_key(settings.provider_base_url)
    breaker_redis = pace_redis = None
    if settings.redis_enabled:
        url = settings.effective_redis_url
        timeout = min(settings.redis_socket_timeout_s, BREAKER_SOCKET_TIMEOUT_S)
        breaker_redis = redis.Redis.from_url(  # pybreaker's storage needs bytes replies
            url, socket_timeout=timeout, socket_connect_timeout=timeout, decode_responses=False)
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            url, max_connections=PACE_CONNECTIONS, timeout=settings.redis_socket_timeout_s,
            socket_timeout=settings.redis_socket_timeout_s,
            socket_connect_timeout=settings.redis_socket_timeout_s)
        pace_redis = redis.asyncio.Redis(connection_pool=pool)
    breakers = FleetBreakers(settings.circuit_breaker_fail_max, settings.circuit_breaker_timeout_s,
                             key, breaker_redis)
    return ResilientProvider(client, breakers, FleetPace(key, pace_redis),
                             settings.provider_max_attempts, settings.provider_timeout_s)


def provider_key(base_url: str) -> str:
    """Return the name that tells one provider's shared state from another's: host and path."""
    parts = urlsplit(base_url)
    return f"{parts.netloc}{parts.path}".rstrip("/") or base_url


def _count(model: Model, error: BaseException) -> None:
    outcome = next((name for kind, name in OUTCOMES.items() if isinstance(error, kind)), None)
    LLM_REQUESTS.labels(model=model.id, outcome=outcome or "error").inc()


def _count_success(model: Model, completion: Completion) -> None:
    counts = _ModelCounts.of(model.id)
    counts.ok.inc()
    counts.duration.observe(completion.latency_ms / 1000)
    usage = completion.usage
    counts.prompt_tokens.inc(usage.get("prompt_tokens", 0))
    counts.completion_tokens.inc(usage.get("completion_tokens", 0))
    cost = usage.get("cost")
    if cost is None:
        cost = (usage.get("prompt_tokens", 0) * model.price_prompt
                + usage.get("completion_tokens", 0) * model.price_completion) / 1_000_000
    counts.cost.inc(cost)


class _ModelCounts:
    """One model's metrics of a successful call, labelled once (``labels()`` outcosts a count)."""

    _known: dict[str, _ModelCounts] = {}

    def __init__(self, model_id: str) -> None:
        self.ok = LLM_REQUESTS.labels(model=model_id, outcome="ok")
        self.duration = LLM_REQUEST_DURATION.labels(model=model_id)
        self.prompt_tokens = LLM_TOKENS.labels(model=model_id, kind="prompt")
        self.completion_tokens = LLM_TOKENS.labels(model=model_id, kind="completion")
        self.cost = LLM_COST.labels(model=model_id)

    @classmethod
    def of(cls, model_id: str) -> _ModelCounts:
        found = cls._known.get(model_id)
        if found is None:  # model ids come from the roster: a few, never unbounded
            found = cls._known[model_id] = cls(model_id)
        return found
