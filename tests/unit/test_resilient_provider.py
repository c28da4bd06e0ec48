"""The resilient provider against ``httpx.MockTransport``: retries, breakers and pace in memory.

Shared state in Redis is tested in ``tests/integration/test_shared_state.py``; here every
breaker and limit lives in this process, as with ``REDIS_ENABLED=false``.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from tenacity import RetryCallState

from shared.provider.breaker import FleetBreakers
from shared.provider.client import ProviderClient
from shared.provider.errors import (
    CircuitOpen,
    ContextLengthExceeded,
    DeadlineReached,
    NoCallSlot,
    PoolExhausted,
    RateLimited,
    RequestRejected,
)
from shared.provider.pace import FleetPace
from shared.provider.resilient import ResilientProvider, build_provider, provider_key
from shared.provider.retry import PROVIDER_RETRY, stop_at_deadline, wait_retry_after
from shared.roster import Model
from shared.settings import Settings

BASE_URL = "https://provider.test/api/v1"
MODEL = Model(id="test/model", name="model")
MESSAGES = [{"role": "user", "content": "Why is the sky blue?"}]
OK = {"choices": [{"message": {"role": "assistant", "content": "Rayleigh scattering."}}],
      "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}


class Replies:
    """Answer requests with the given replies in turn (the last one repeats); count them."""

    def __init__(self, *replies) -> None:
        self.replies = list(replies)
        self.count = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        reply = self.replies[min(self.count, len(self.replies) - 1)]
        self.count += 1
        if isinstance(reply, Exception):
            raise reply
        return reply


def ask(replies: Replies, *calls: dict, fail_max: int = 5, attempts: int = 3) -> list:
    """Make calls (each a dict of ``complete`` options) in turn; return results or errors."""

    async def run() -> list:
        async with httpx.AsyncClient(transport=httpx.MockTransport(replies)) as http:
            provider = ResilientProvider(
                ProviderClient(http, BASE_URL, None, 60.0),
                FleetBreakers(fail_max, 60, "test", None), FleetPace("test", None), attempts, 60.0)
            outcomes = []
            for options in calls or ({},):
                model = options.pop("model", MODEL)
                try:
                    outcomes.append(await provider.complete(model, MESSAGES, **options))
                except Exception as error:  # noqa: BLE001 - the outcome is what is tested
                    outcomes.append(error)
            await provider.aclose()
            return outcomes

    return asyncio.run(run())


def error(status: int, message: str = "boom", **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"message": message}}, headers=headers)


def test_a_transient_failure_is_retried_and_the_answer_returned():
    replies = Replies(error(503), httpx.Response(200, json=OK))
    [completion] = ask(replies)
    assert completion.content == "Rayleigh scattering." and replies.count == 2


@pytest.mark.parametrize("reply, kind", [
    (error(400, "bad request"), RequestRejected),
    (error(400, "maximum context length is 8192 tokens"), ContextLengthExceeded),
    (error(401, "no key"), RequestRejected),
])
def test_a_permanent_error_is_never_retried(reply, kind):
    replies = Replies(reply)
    [outcome] = ask(replies)
    assert isinstance(outcome, kind) and replies.count == 1


def test_retries_stop_after_the_configured_attempts():
    replies = Replies(error(500))
    [outcome] = ask(replies, attempts=2)
    assert "HTTP 500" in str(outcome) and replies.count == 2


def test_no_attempt_starts_after_the_deadline():
    replies = Replies(httpx.Response(200, json=OK))
    [outcome] = ask(replies, {"deadline": time.monotonic() - 1})
    assert isinstance(outcome, DeadlineReached) and replies.count == 0


def test_a_retry_after_beyond_the_deadline_ends_the_retries_and_pauses_the_model():
    replies = Replies(error(429, **{"Retry-After": "30"}), httpx.Response(200, json=OK))
    soon = time.monotonic() + 5
    first, second = ask(replies, {"deadline": soon}, {"deadline": soon})
    assert isinstance(first, RateLimited) and first.retry_after == 30
    assert isinstance(second, NoCallSlot), "every call to the model waits out the Retry-After"
    assert replies.count == 1


def test_the_breaker_opens_after_fail_max_failures_and_then_skips_the_model():
    replies = Replies(error(500))
    first, second = ask(replies, {}, {}, fail_max=2)
    assert isinstance(first, CircuitOpen) and str(first).startswith("HTTP 500")
    assert "circuit breaker of test/model is open" in str(first)
    assert isinstance(second, CircuitOpen) and replies.count == 2


@pytest.mark.parametrize("reply", [
    error(400, "bad request"),
    error(429, **{"Retry-After": "0"}),
    httpx.PoolTimeout("no free connection"),
])
def test_permanent_errors_429s_and_local_congestion_never_open_the_breaker(reply):
    replies = Replies(reply)
    outcomes = ask(replies, *({} for _ in range(4)), fail_max=2, attempts=1)
    assert not any(isinstance(outcome, CircuitOpen) for outcome in outcomes)
    assert replies.count == 4
    if isinstance(reply, httpx.PoolTimeout):
        assert all(isinstance(outcome, PoolExhausted) for outcome in outcomes)


def test_the_rpm_limit_refuses_a_call_that_could_not_start_before_the_deadline():
    limited = Model(id="test/limited", name="limited", rpm=2)
    replies = Replies(httpx.Response(200, json=OK))
    soon = time.monotonic() + 5
    outcomes = ask(replies, *({"model": limited, "deadline": soon} for _ in range(3)))
    assert [type(outcome).__name__ for outcome in outcomes] == [
        "Completion", "Completion", "NoCallSlot"]
    assert replies.count == 2


def retry_state(error: Exception, upcoming_sleep: float = 0.0) -> RetryCallState:
    state = RetryCallState(PROVIDER_RETRY, None, (), {})
    state.set_exception((type(error), error, None))
    state.upcoming_sleep = upcoming_sleep
    return state


def test_retry_after_is_a_floor_under_the_jitter():
    wait = wait_retry_after(PROVIDER_RETRY.wait.jitter)
    assert wait(retry_state(RateLimited("slow down", retry_after=7.0))) >= 7.0
    assert 0 <= wait(retry_state(RateLimited("slow down"))) <= 0.5


def test_retries_stop_when_the_next_attempt_would_start_after_the_deadline():
    failed = RateLimited("slow down")
    assert stop_at_deadline(time.monotonic() + 1)(retry_state(failed, upcoming_sleep=2))
    assert not stop_at_deadline(time.monotonic() + 10)(retry_state(failed, upcoming_sleep=2))
    assert not stop_at_deadline(None)(retry_state(failed, upcoming_sleep=2))


def test_the_provider_key_names_host_and_path():
    assert provider_key("https://openrouter.ai/api/v1/") == "openrouter.ai/api/v1"
    assert provider_key("http://127.0.0.1:9000/v1") == "127.0.0.1:9000/v1"


def test_without_redis_every_breaker_and_limit_lives_in_the_process():
    provider = build_provider(Settings(redis_enabled=False), httpx.AsyncClient())
    assert provider.pace._redis is None and provider.breakers._redis is None
    asyncio.run(provider.client._http.aclose())
