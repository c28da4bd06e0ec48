"""Errors of calls to an LLM provider, and the one function that tells them apart.

::

    ProviderError                      a call to the provider failed
     ├── TransientError                a retry may help; ``retry_after`` when the provider said
     │    ├── ProviderTimeout          no answer in time (connect, read or write timeout)
     │    ├── ProviderUnavailable      no connection, connection lost, HTTP 408/409/425/5xx
     │    ├── RateLimited              HTTP 429
     │    └── MalformedResponse        not a usable completion: not JSON, HTML, truncated, no
     │                                 choices, or an HTTP 200 whose body holds a transient error
     └── PermanentError                never retried
          ├── ContextLengthExceeded    the prompt does not fit the model's context
          └── RequestRejected          any other 4xx (400/401/403/404/422 ...), and an HTTP 200
                                       whose body holds such an error

    CallNotMade                        no request reached the provider (not a ProviderError)
     ├── PoolExhausted                 no free connection in the local pool
     ├── CircuitOpen                   the model's circuit breaker is open (or another process
     │                                 holds its one trial call)
     ├── NoCallSlot                    the model's shared rate limit has no slot before the deadline
     └── DeadlineReached               the deadline passed before the call could start

``CallNotMade`` stands apart on purpose: waiting for a local connection, a breaker or a rate
limit is a decision or congestion on our side, and counting it as a provider failure would let a
burst trip a fleet-wide breaker. None of them is retried.

Every error carries ``reason``, a short text fit to show a user (never a full body, never a
request header), and ``status``, the HTTP status or the error code the provider reported.
"""

from __future__ import annotations

import math
import re
import time
from datetime import UTC
from email.utils import parsedate_to_datetime

import httpx

REASON_MAX_CHARS = 200
TRANSIENT_STATUSES = frozenset({408, 409, 425, 429})
CONTEXT_LENGTH = re.compile(
    r"context[ _-]?(length|window)|maximum context|too many tokens|tokens? exceed"
    r"|prompt is too long",
    re.IGNORECASE,
)
SECRET = re.compile(r"sk-[A-Za-z0-9_\-]{8,}")


class ProviderError(Exception):
    """A call to the provider failed."""

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        self.reason = _shorten(reason)
        self.status = status
        super().__init__(self.reason)

    def __reduce__(self):
        return (type(self), (self.reason,), self.__dict__)


class TransientError(ProviderError):
    """A call failed in a way that a later retry may not."""

    def __init__(
        self, reason: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(reason, status=status)
        self.retry_after = retry_after


class ProviderTimeout(TransientError):
    """The provider did not answer in time."""


class ProviderUnavailable(TransientError):
    """The provider could not be reached or answered with a server-side error."""


class RateLimited(TransientError):
    """The provider refused the call for now (HTTP 429)."""


class MalformedResponse(TransientError):
    """The provider answered, but not with a usable completion."""


class PermanentError(ProviderError):
    """A call failed in a way that retrying the same request cannot fix."""


class ContextLengthExceeded(PermanentError):
    """The prompt is longer than the model accepts."""


class RequestRejected(PermanentError):
    """The provider rejected the request (bad request, key, model or permission)."""


class CallNotMade(Exception):
    """No request reached the provider: a local refusal or congestion, never a provider failure."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class PoolExhausted(CallNotMade):
    """No connection of the local pool became free in time: congestion, not a provider failure."""

    def __init__(self, reason: str = "no free connection to the provider in this worker") -> None:
        super().__init__(reason)


class CircuitOpen(CallNotMade):
    """The model's circuit breaker is open, so the call was skipped."""


class NoCallSlot(CallNotMade):
    """The model's shared rate limit gives no slot before the caller's deadline."""


class DeadlineReached(CallNotMade):
    """The caller's deadline passed before the call could start."""


def classify(outcome: httpx.Response | httpx.HTTPError) -> ProviderError | PoolExhausted:
    """Return the error that a failed call's exception, or its unusable response, stands for.

    Pass a response only when it is not a usable completion: a response with a success status is
    explained by its body (an embedded error object, HTML, broken JSON, no choices).
    """
    if isinstance(outcome, httpx.Response):
        if outcome.is_success:
            return _classify_body(outcome)
        return _classify_status(outcome)
    return _classify_exception(outcome)


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Return the wait a ``Retry-After`` value asks for (delay seconds or an HTTP-date)."""
    if not value or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        return _seconds_until(value, time.time() if now is None else now)
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _seconds_until(http_date: str, now: float) -> float | None:
    try:
        when = parsedate_to_datetime(http_date)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP-date is always UTC, whatever zone it spells
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def _classify_exception(error: httpx.HTTPError) -> ProviderError | PoolExhausted:
    if isinstance(error, httpx.PoolTimeout):
        return PoolExhausted()
    if isinstance(error, httpx.TimeoutException):
        return ProviderTimeout(f"the provider did not answer in time ({type(error).__name__})")
    if isinstance(error, httpx.DecodingError):
        return MalformedResponse("the provider's answer could not be decoded")
    if isinstance(error, httpx.UnsupportedProtocol | httpx.LocalProtocolError):
        return RequestRejected(f"the request could not be sent ({type(error).__name__})")
    if isinstance(error, httpx.TransportError):
        return ProviderUnavailable(f"the provider could not be reached ({type(error).__name__})")
    return RequestRejected(f"the request failed ({type(error).__name__})")


def _classify_status(response: httpx.Response) -> ProviderError:
    status = response.status_code
    message = _error_message(response)
    reason = f"HTTP {status}: {message}" if message else f"HTTP {status}"
    retry_after = retry_after_seconds(response.headers.get("Retry-After"))
    if status == 429:
        return RateLimited(reason, status=status, retry_after=retry_after)
    if status in TRANSIENT_STATUSES or status >= 500:
        return ProviderUnavailable(reason, status=status, retry_after=retry_after)
    return _permanent(reason, status, message or "")


def _classify_body(response: httpx.Response) -> ProviderError:
    status = response.status_code
    if _looks_like_html(response):
        return MalformedResponse(f"HTTP {status} with an HTML page instead of JSON", status=status)
    try:
        body = response.json()
    except ValueError:
        return MalformedResponse(f"HTTP {status} with a truncated or non-JSON body", status=status)
    if isinstance(body, dict) and body.get("error"):
        return _classify_embedded_error(body["error"])
    if not isinstance(body, dict) or not body.get("choices"):
        return MalformedResponse(f"HTTP {status} without any choices", status=status)
    return MalformedResponse(f"HTTP {status} without a message content", status=status)


def _classify_embedded_error(error: object) -> ProviderError:
    """Classify an error the provider reported inside an HTTP 200 body (OpenRouter does this)."""
    message = _message_of(error) or "no message"
    code = _integer(error.get("code")) if isinstance(error, dict) else None
    reason = f"error in an HTTP 200 body (code {code}): {message}"
    if code is None or code in TRANSIENT_STATUSES or not 400 <= code < 500:
        return MalformedResponse(reason, status=code)
    return _permanent(reason, code, message)


def _permanent(reason: str, status: int, message: str) -> PermanentError:
    if CONTEXT_LENGTH.search(message):
        return ContextLengthExceeded(reason, status=status)
    return RequestRejected(reason, status=status)


def _error_message(response: httpx.Response) -> str | None:
    if _looks_like_html(response):
        return "an HTML error page"
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:REASON_MAX_CHARS] or None
    if isinstance(body, dict):
        return _message_of(body.get("error")) or _message_of(body)
    return None


def _message_of(error: object) -> str | None:
    """Return the message of an error object, with its code when the code is a word."""
    if isinstance(error, str):
        return error
    if not isinstance(error, dict):
        return None
    message = error.get("message") or error.get("detail")
    code = error.get("code") or error.get("type")
    if isinstance(code, str) and code not in str(message):
        return f"{code}: {message}" if message else code
    return str(message) if message else None


def _looks_like_html(response: httpx.Response) -> bool:
    if "html" in response.headers.get("Content-Type", "").lower():
        return True
    return response.content.lstrip()[:1] == b"<"


def _integer(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None


def _shorten(text: str) -> str:
    text = SECRET.sub("[redacted]", " ".join(str(text).split()))
    if len(text) <= REASON_MAX_CHARS:
        return text
    return text[: REASON_MAX_CHARS - 3] + "..."
