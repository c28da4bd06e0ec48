"""Tell a session's callback URL that a round ended: one signed POST per delivery attempt.

The body is ``{"type": "round.finished", "session_id", "round_no", "status", "session_url",
"finished_at"}``; the headers ``X-Council-Timestamp`` (Unix seconds) and ``X-Council-Signature:
sha256=<hex HMAC-SHA256 of "{timestamp}.{body}" keyed with WEBHOOK_SECRET>`` let the receiver
check where it came from and when. Redirects are never followed.

An attempt that met a connection error, a timeout, a 408, a 429 or a 5xx is tried again later,
with exponential backoff and jitter, up to ``WEBHOOK_MAX_ATTEMPTS`` attempts in all; any other
answer ends the delivery. Every attempt is recorded on the session (``record_delivery``), and the
attempt count is read back from there, so a re-delivered task neither repeats a success nor
exceeds the cap. The callback URL is checked again before each attempt: DNS answers change.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from shared import records
from shared.callbacks import CallbackRefused, check_callback_url
from shared.settings import Settings
from shared.store import Store

log = logging.getLogger(__name__)

EVENT_TYPE = "round.finished"
TIMESTAMP_HEADER = "X-Council-Timestamp"
SIGNATURE_HEADER = "X-Council-Signature"
USER_AGENT = "llm-council-webhooks/1"
RETRY_STATUSES = frozenset({408, 429})
# A retry waits in the broker as a countdown; with Redis as broker it must stay well below the
# visibility timeout (ROUND_TIME_LIMIT + 300 s) or the waiting message would be handed out twice.
MAX_BACKOFF_S = 300.0
MAX_ERROR_CHARS = 300


@dataclass(frozen=True)
class Delivery:
    """What one call of ``deliver_webhook`` did: ``retry_in_s`` is set when to try again."""

    outcome: str  # delivered | retry | failed | skipped
    attempt: int | None = None
    retry_in_s: float | None = None


def webhook_client(settings: Settings) -> httpx.Client:
    """Return the HTTP client for deliveries: short timeout, no redirects, no proxies."""
    return httpx.Client(timeout=settings.webhook_timeout_s, follow_redirects=False,
                        trust_env=False, headers={"User-Agent": USER_AGENT})


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """Return the ``X-Council-Signature`` value for a body sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def deliver_webhook(
    store: Store, http: httpx.Client, settings: Settings, session_id: str, round_no: int
) -> Delivery:
    """Make the next delivery attempt of a round's webhook and record it on the session."""
    session = store.get_session(session_id)
    round_ = _round(session, round_no)
    if session is None or round_ is None or not session.get("callback_url"):
        return Delivery("skipped")
    earlier = [d for d in session["deliveries"] if d.get("round_no") == round_no]
    if any(_succeeded(d) for d in earlier) or len(earlier) >= settings.webhook_max_attempts:
        return Delivery("skipped")
    number = len(earlier) + 1
    attempt = _post(http, settings, session, round_)
    store.record_delivery(session_id, {
        "round_no": round_no, "attempt": number, "at": _iso(time.time()),
        "status_code": attempt.status_code, "error": attempt.error,
        "duration_ms": attempt.duration_ms,
    })
    if attempt.status_code is not None and 200 <= attempt.status_code < 300:
        return Delivery("delivered", number)
    if attempt.retryable and number < settings.webhook_max_attempts:
        return Delivery("retry", number, backoff_s(settings, number, attempt.retry_after_s))
    log.warning("webhook delivery failed for good", extra={
        "session_id": session_id, "round_no": round_no, "attempt": number,
        "status_code": attempt.status_code, "error": attempt.error})
    return Delivery("failed", number)


def payload(session: dict, round_: dict, settings: Settings) -> dict:
    """Return the webhook body for a round that ended."""
    path = f"/v1/sessions/{session['id']}"
    return {
        "type": EVENT_TYPE,
        "session_id": session["id"],
        "round_no": round_["round_no"],
        "status": round_["status"],
        "session_url": (settings.public_base_url or "") + path,
        "finished_at": _iso(round_["finished_at"]),
    }


def backoff_s(settings: Settings, attempt: int, retry_after_s: float | None = None) -> float:
    """Return how long to wait after failed attempt ``attempt``: doubling, half of it jitter."""
    ceiling = min(MAX_BACKOFF_S, settings.webhook_backoff_s * 2 ** (attempt - 1))
    wait = ceiling / 2 + random.uniform(0, ceiling / 2)
    return min(MAX_BACKOFF_S, max(wait, retry_after_s or 0.0))


@dataclass(frozen=True)
class _Attempt:
    status_code: int | None
    error: str | None
    duration_ms: int
    retryable: bool
    retry_after_s: float | None = None


def _post(http: httpx.Client, settings: Settings, session: dict, round_: dict) -> _Attempt:
    """POST the signed body once, unless the callback URL may no longer be called."""
    try:
        check_callback_url(session["callback_url"], settings.webhook_allow_private)
    except CallbackRefused as refused:
        return _Attempt(None, f"callback URL refused: {refused}", 0, retryable=False)
    body = json.dumps(payload(session, round_, settings), separators=(",", ":")).encode()
    timestamp = str(int(time.time()))
    headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: timestamp,
               SIGNATURE_HEADER: sign(settings.webhook_secret, timestamp, body)}
    started = time.monotonic()
    try:
        response = http.post(session["callback_url"], content=body, headers=headers)
    except httpx.TransportError as error:  # connect errors and timeouts among them
        message = f"{type(error).__name__}: {error}"[:MAX_ERROR_CHARS]
        return _Attempt(None, message, _elapsed_ms(started), retryable=True)
    code = response.status_code
    error = "redirect not followed" if response.is_redirect else None
    return _Attempt(code, error, _elapsed_ms(started),
                    retryable=code >= 500 or code in RETRY_STATUSES,
                    retry_after_s=_retry_after(response))


def _round(session: dict | None, round_no: int) -> dict | None:
    if session is None or not 1 <= round_no <= len(session["rounds"]):
        return None
    round_ = session["rounds"][round_no - 1]
    return round_ if round_["status"] in records.TERMINAL else None


def _succeeded(delivery: dict) -> bool:
    code = delivery.get("status_code")
    return code is not None and 200 <= code < 300


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
