import asyncio
import json

import httpx
import pytest

from shared.provider.client import (
    POOL_TIMEOUT_S,
    Completion,
    ProviderClient,
    build_http_client,
)
from shared.provider.errors import (
    ContextLengthExceeded,
    MalformedResponse,
    PoolExhausted,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    RequestRejected,
)
from shared.provider.transport import AiohttpTransport
from shared.roster import Model
from shared.settings import Settings

BASE_URL = "https://provider.test/api/v1"
MODEL = Model(id="openai/gpt-4o-mini", name="gpt-4o-mini")
SLOW_MODEL = Model(id="big/slow", name="slow", timeout_s=123.0)
MESSAGES = [{"role": "user", "content": "Why is the sky blue?"}]


def completion_body(content="Rayleigh scattering.", usage=None):
    return {
        "id": "gen-1",
        "object": "chat.completion",
        "model": "openai/gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
        "usage": usage or {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
    }


class Provider:
    """Answer every request with one canned response (or exception) and remember the requests."""

    def __init__(self, reply):
        self.reply = reply
        self.requests = []

    def __call__(self, request):
        self.requests.append(request)
        if isinstance(self.reply, Exception):
            raise self.reply
        return self.reply


def complete(reply, model=MODEL, api_key="sk-test", **client_options):
    provider = Provider(reply)

    async def call():
        async with httpx.AsyncClient(transport=httpx.MockTransport(provider)) as http:
            client = ProviderClient(http, BASE_URL, api_key, 60.0, **client_options)
            return await client.complete(model, MESSAGES)

    return asyncio.run(call()), provider.requests


def failure(reply, model=MODEL):
    with pytest.raises(Exception) as caught:
        complete(reply, model)
    return caught.value


def test_success_returns_content_usage_and_latency():
    completion, requests = complete(httpx.Response(200, json=completion_body()))
    assert isinstance(completion, Completion)
    assert completion.model == MODEL.id
    assert completion.content == "Rayleigh scattering."
    assert completion.usage == {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}
    assert completion.latency_ms >= 0
    assert len(requests) == 1


def test_request_is_an_openai_chat_completion():
    _, [request] = complete(httpx.Response(200, json=completion_body()))
    assert request.method == "POST"
    assert str(request.url) == f"{BASE_URL}/chat/completions"
    assert json.loads(request.content) == {"model": MODEL.id, "messages": MESSAGES}
    assert request.headers["Authorization"] == "Bearer sk-test"
    assert request.headers["X-Title"] == "LLM Council"
    assert request.headers["Content-Type"] == "application/json"


def test_max_tokens_and_referer_are_sent_when_given():
    provider = Provider(httpx.Response(200, json=completion_body()))

    async def call():
        async with httpx.AsyncClient(transport=httpx.MockTransport(provider)) as http:
            client = ProviderClient(http, BASE_URL + "/", None, 60.0, referer="https://x.test")
            await client.complete(MODEL, MESSAGES, max_tokens=50)

    asyncio.run(call())
    [request] = provider.requests
    assert str(request.url) == f"{BASE_URL}/chat/completions"
    assert json.loads(request.content)["max_tokens"] == 50
    assert request.headers["HTTP-Referer"] == "https://x.test"
    assert "Authorization" not in request.headers


def test_openrouter_cost_is_kept_and_missing_counts_are_zero():
    usage = {"prompt_tokens": 10, "completion_tokens": 4, "cost": 0.00021}
    completion, _ = complete(httpx.Response(200, json=completion_body(usage=usage)))
    assert completion.usage == {
        "prompt_tokens": 10,
        "completion_tokens": 4,
        "total_tokens": 14,
        "cost": 0.00021,
    }


def test_missing_usage_counts_as_zero_tokens():
    body = completion_body()
    del body["usage"]
    completion, _ = complete(httpx.Response(200, json=body))
    assert completion.usage == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


def test_timeout_is_the_models_own_or_the_default():
    _, [default] = complete(httpx.Response(200, json=completion_body()), model=MODEL)
    _, [own] = complete(httpx.Response(200, json=completion_body()), model=SLOW_MODEL)
    assert default.extensions["timeout"]["read"] == 60.0
    assert own.extensions["timeout"] == {
        "connect": 123.0,
        "read": 123.0,
        "write": 123.0,
        "pool": POOL_TIMEOUT_S,
    }


@pytest.mark.parametrize(
    "reply, kind",
    [
        (httpx.Response(500, json={"error": {"message": "boom"}}), ProviderUnavailable),
        (httpx.Response(503, text="unavailable"), ProviderUnavailable),
        (httpx.Response(429, headers={"Retry-After": "4"}), RateLimited),
        (httpx.Response(401, json={"error": {"message": "bad key"}}), RequestRejected),
        (httpx.Response(404, json={"error": {"message": "no such model"}}), RequestRejected),
        (
            httpx.Response(400, json={"error": {"code": "context_length_exceeded"}}),
            ContextLengthExceeded,
        ),
        (httpx.Response(200, text='{"choices": [{"mess'), MalformedResponse),
        (httpx.Response(200, html="<html>gateway</html>"), MalformedResponse),
        (httpx.Response(200, json={"choices": []}), MalformedResponse),
        (httpx.Response(200, json={"error": {"code": 502, "message": "up"}}), MalformedResponse),
        (httpx.Response(200, json={"error": {"code": 403, "message": "no"}}), RequestRejected),
    ],
)
def test_failed_responses_raise_their_error_class(reply, kind):
    assert type(failure(reply)) is kind


def test_rate_limit_carries_retry_after():
    error = failure(httpx.Response(429, headers={"Retry-After": "4"}))
    assert error.retry_after == 4.0


@pytest.mark.parametrize(
    "exception, kind",
    [
        (httpx.ReadTimeout("slow"), ProviderTimeout),
        (httpx.ConnectTimeout("slow"), ProviderTimeout),
        (httpx.ConnectError("refused"), ProviderUnavailable),
        (httpx.RemoteProtocolError("server disconnected"), ProviderUnavailable),
        (httpx.PoolTimeout("no free connection"), PoolExhausted),
    ],
)
def test_transport_failures_raise_their_error_class(exception, kind):
    error = failure(exception)
    assert type(error) is kind
    assert isinstance(error.__cause__, type(exception))


def test_http_client_pools_the_configured_connections_on_aiohttp():
    http = build_http_client(Settings(provider_max_connections=37, provider_timeout_s=9.0))
    try:
        assert isinstance(http._transport, AiohttpTransport)
        assert http._transport.max_connections == 37
        assert (http.timeout.read, http.timeout.pool) == (9.0, POOL_TIMEOUT_S)
    finally:
        asyncio.run(http.aclose())
