"""``Idempotency-Key`` on work-creating POSTs: a retried request gets the first answer again.

The same key with the same body within ``IDEMPOTENCY_TTL_S`` replays the first status and body;
the same key with another body is 422; a key whose first request is still being handled is 409.
Keys are scoped to the caller, so two clients can never see each other's answers.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time

from flask import current_app, request

from api.auth import current_caller
from api.errors import ApiError
from api.resources import get_store
from shared.records import IDEMPOTENCY_TTL_S

HEADER = "Idempotency-Key"
MAX_KEY_CHARS = 255
REPLAYED_HEADERS = ("Location", "Retry-After")


def idempotent(view):
    """Make a work-creating view safe to retry with an ``Idempotency-Key`` header."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        key = request.headers.get(HEADER)
        if key is None:
            return view(*args, **kwargs)
        _check_key(key)
        owner = current_caller().owner or ""
        fingerprint = _fingerprint()
        earlier = _reserve(owner, key, fingerprint)
        if earlier is not None:
            return _replay(earlier, fingerprint)
        return _answer_and_remember(view, owner, key, args, kwargs)

    return wrapper


def _reserve(owner: str, key: str, fingerprint: str) -> dict | None:
    store = get_store()
    now = time.time()
    earlier = store.begin_idempotent(owner, key, fingerprint, now)
    if earlier is not None and earlier["created_at"] < now - IDEMPOTENCY_TTL_S:
        store.release_idempotent(owner, key)  # expired, just not swept yet
        earlier = store.begin_idempotent(owner, key, fingerprint, now)
    return earlier


def _answer_and_remember(view, owner: str, key: str, args, kwargs):
    store = get_store()
    try:
        response = current_app.make_response(view(*args, **kwargs))
    except BaseException:
        store.release_idempotent(owner, key)
        raise
    if response.status_code >= 500:
        store.release_idempotent(owner, key)
        return response
    headers = {name: response.headers[name] for name in REPLAYED_HEADERS
               if name in response.headers}
    store.finish_idempotent(owner, key, response.status_code, response.get_json(), headers)
    return response


def _replay(earlier: dict, fingerprint: str):
    if earlier["fingerprint"] != fingerprint:
        raise ApiError(422, "idempotency_key_reused",
                       "this Idempotency-Key was used with a different request")
    if earlier["status"] is None:
        raise ApiError(409, "request_in_progress",
                       "the first request with this Idempotency-Key is still being handled",
                       headers={"Retry-After": "1"})
    response = current_app.json.response(earlier["body"])
    response.status_code = earlier["status"]
    response.headers.update(earlier["headers"])
    response.headers["Idempotent-Replayed"] = "true"
    return response


def _check_key(key: str) -> None:
    if not key or len(key) > MAX_KEY_CHARS or not key.isprintable():
        raise ApiError(400, "invalid_idempotency_key",
                       f"{HEADER} must be 1 to {MAX_KEY_CHARS} printable characters")


def _fingerprint() -> str:
    """Hash the method, path and body (JSON bodies in canonical form)."""
    raw = request.get_data(cache=True)
    try:
        body = json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":")).encode()
    except ValueError:
        body = raw
    digest = hashlib.sha256(f"{request.method} {request.path}\n".encode())
    digest.update(body)
    return digest.hexdigest()


