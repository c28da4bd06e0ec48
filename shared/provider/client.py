"""Call an OpenAI-compatible chat completions endpoint, one request per call.

``ProviderClient.complete`` makes exactly one HTTP request and raises only the errors of
``shared.provider.errors``: retries and breakers wrap it from outside, so none are stacked here
(and the transport retries nothing either).

Every call goes out as an ``httpx.Request`` built here and handed to ``AsyncClient.send``: its
headers (the client's merged with ours) are built once, so a call pays for its body and not for
what ``AsyncClient.post`` would merge again on each request.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import httpx

from shared.provider.errors import classify
from shared.provider.transport import AiohttpTransport
from shared.roster import Model
from shared.settings import Settings

POOL_TIMEOUT_S = 5.0
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
    """Build the one pooled HTTP client a worker process shares across all its calls.

    Its transport pools ``PROVIDER_MAX_CONNECTIONS`` connections on aiohttp's connector: see
    ``shared.provider.transport`` for why not on httpcore's.
    """
    return ProviderHttpClient(
        transport=AiohttpTransport(settings.provider_max_connections),
        timeout=httpx.Timeout(settings.provider_timeout_s, pool=POOL_TIMEOUT_S),
        follow_redirects=False,
    )


class ProviderHttpClient(httpx.AsyncClient):
    """httpx's client, keeping no cookies.

    A provider authenticates by key, and the cookies a gateway in front of it sets are not
    needed back. httpx reads every response's ``Set-Cookie`` through the standard library's
    cookie jar, which took about a third of this client's own time per call.
    """

    @property
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES

    @cookies.setter
    def cookies(self, cookies: object) -> None:
        pass  # nothing to keep


class _NoCookies(httpx.Cookies):
    def extract_cookies(self, response: httpx.Response) -> None:
        return None


_NO_COOKIES = _NoCookies()


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
        # Parsed once: httpx parses a URL given as text on every request (host checks included).
        self._url = httpx.URL(base_url.rstrip("/") + "/chat/completions")
        self._headers = httpx.Headers({**http.headers, **_headers(api_key, referer)})
        self._default_timeout_s = default_timeout_s

    async def complete(
        self, model: Model, messages: list[dict], max_tokens: int | None = None, *,
        deadline: float | None = None,
    ) -> Completion:
        """Ask one model once; raise a ``ProviderError`` (or ``PoolExhausted``) on failure.

        ``deadline`` (``time.monotonic``) shortens the model's timeout when it comes sooner.
        """
        body: dict = {"model": model.id, "messages": messages}
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        timeout_s = model.timeout_s or self._default_timeout_s
        if deadline is not None:
            timeout_s = max(0.001, min(timeout_s, deadline - time.monotonic()))
        request = httpx.Request(
            "POST", self._url, content=_encode(body), headers=self._headers,
            extensions={"timeout": {"connect": timeout_s, "read": timeout_s, "write": timeout_s,
                                    "pool": POOL_TIMEOUT_S}},
        )
        started = time.perf_counter()
        try:
            response = await self._http.send(request)
        except httpx.HTTPError as error:
            raise classify(error) from error
        latency_ms = round((time.perf_counter() - started) * 1000)
        content, usage = _read_completion(response)
        if content is None:
            raise classify(response)
        return Completion(model=model.id, content=content, usage=usage, latency_ms=latency_ms)


def _headers(api_key: str | None, referer: str | None) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "X-Title": APP_TITLE}
    if referer:
        headers["HTTP-Referer"] = referer
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def _encode(body: dict) -> bytes:
    """Return a request body as httpx's ``json=`` would encode it."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


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
