"""Call an OpenAI-compatible chat completions endpoint, one request per call.

``ProviderClient.complete`` makes exactly one HTTP request and raises only the errors of
``shared.provider.errors``: retries and breakers wrap it from outside, so none are stacked here
(and the transport retries nothing either).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import httpx

from shared.provider.errors import classify
from shared.roster import Model
from shared.settings import Settings

POOL_TIMEOUT_S = 5.0
SHARD_CONNECTIONS = 32
APP_TITLE = "LLM Council"
USAGE_COUNTS = ("prompt_tokens", "completion_tokens", "total_tokens")


@dataclass(frozen=True)
class Completion:
    """One model's answer to one request, with what it cost."""

    model: str
    content: str
    usage: dict
    latency_ms: int


def build_http_client(settings: Settings) -> httpx.AsyncClient:
    """Build the one pooled HTTP client a worker process shares across all its calls."""
    return httpx.AsyncClient(
        transport=ShardedTransport(settings.provider_max_connections),
        timeout=httpx.Timeout(settings.provider_timeout_s, pool=POOL_TIMEOUT_S),
        follow_redirects=False,
    )


class ShardedTransport(httpx.AsyncBaseTransport):
    """Spread calls over small connection pools that together hold ``max_connections``.

    httpcore rescans every connection of a pool (once per idle connection) whenever a request
    starts or ends, so one pool of hundreds of connections spends more CPU than the calls do.
    Each call goes to the shard with the fewest calls in flight, so a call waits for a
    connection only when every shard is full.
    """

    def __init__(self, max_connections: int, shard_connections: int = SHARD_CONNECTIONS) -> None:
        total = max(1, max_connections)
        count = math.ceil(total / shard_connections)
        self.shards = [_Shard(total // count + (n < total % count)) for n in range(count)]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send a request through the least busy shard; it stays busy until the body closes."""
        shard = min(self.shards, key=lambda candidate: candidate.in_flight)
        shard.in_flight += 1
        try:
            response = await shard.transport.handle_async_request(request)
        except BaseException:
            shard.in_flight -= 1
            raise
        response.stream = _ReleasingStream(response.stream, shard)
        return response

    async def aclose(self) -> None:
        """Close every shard's connections."""
        for shard in self.shards:
            await shard.transport.aclose()


class _Shard:
    def __init__(self, size: int) -> None:
        # Keep-alive sized to the pool: httpcore closes every idle connection above this number.
        limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
        self.transport = httpx.AsyncHTTPTransport(limits=limits, retries=0, http1=True, http2=False)
        self.in_flight = 0


class _ReleasingStream(httpx.AsyncByteStream):
    """A response body that frees its shard once it is closed."""

    def __init__(self, stream: httpx.AsyncByteStream, shard: _Shard) -> None:
        self._stream = stream
        self._shard: _Shard | None = shard

    async def __aiter__(self):
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        if self._shard is not None:
            self._shard.in_flight -= 1
            self._shard = None
        await self._stream.aclose()


class ProviderClient:
    """Ask models for chat completions at one OpenAI-compatible base URL."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        api_key: str | None,
        default_timeout_s: float,
        *,
        referer: str | None = None,
    ) -> None:
        self._http = http
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._headers = _headers(api_key, referer)
        self._default_timeout_s = default_timeout_s

    async def complete(
        self, model: Model, messages: list[dict], max_tokens: int | None = None
    ) -> Completion:
        """Ask one model once; raise a ``ProviderError`` (or ``PoolExhausted``) on failure."""
        body: dict = {"model": model.id, "messages": messages}
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        timeout = httpx.Timeout(model.timeout_s or self._default_timeout_s, pool=POOL_TIMEOUT_S)
        started = time.perf_counter()
        try:
            response = await self._http.post(
                self._url, json=body, headers=self._headers, timeout=timeout
            )
        except httpx.HTTPError as error:
            raise classify(error) from error
        latency_ms = round((time.perf_counter() - started) * 1000)
        content, usage = _read_completion(response)
        if content is None:
            raise classify(response)
        return Completion(model=model.id, content=content, usage=usage, latency_ms=latency_ms)


def _headers(api_key: str | None, referer: str | None) -> dict[str, str]:
    headers = {"X-Title": APP_TITLE}
    if referer:
        headers["HTTP-Referer"] = referer
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def _read_completion(response: httpx.Response) -> tuple[str | None, dict]:
    """Return the first choice's content and the usage, or ``None`` content when unusable."""
    if not response.is_success:
        return None, {}
    try:
        body = response.json()
        content = body["choices"][0]["message"]["content"]
    except (ValueError, LookupError, TypeError):
        return None, {}
    if body.get("error") or not isinstance(content, str):
        return None, {}
    return content, _usage(body.get("usage"))


def _usage(reported: object) -> dict:
    """Return token counts as ints, plus ``cost`` when the provider reports one (OpenRouter)."""
    reported = reported if isinstance(reported, dict) else {}
    usage = {name: _count(reported.get(name)) for name in USAGE_COUNTS}
    if not usage["total_tokens"]:
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    if isinstance(reported.get("cost"), int | float):
        usage["cost"] = float(reported["cost"])
    return usage


def _count(value: object) -> int:
    return int(value) if isinstance(value, int | float) else 0
