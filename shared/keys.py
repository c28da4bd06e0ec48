"""API keys: made here, shown once, stored only as a SHA-256 hash.

Keys are 256-bit random tokens, so a plain SHA-256 is a sound hash: there is nothing to guess.
Lookups go by hash; the final comparison is constant-time so no byte of a stored hash leaks
through timing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid

from shared.records import INTERACTIVE, SCOPES
from shared.store.base import DuplicateKey, Store

PREFIX = "llmc_"
CONFIGURED_KEY_NAME = "API_KEY setting"


def hash_key(raw_key: str) -> str:
    """Return the stored form of a key."""
    return hashlib.sha256(raw_key.encode()).hexdigest()


def issue_key(store: Store, name: str, scope: str, now: float | None = None) -> tuple[dict, str]:
    """Create a key; return its record and the raw key (shown to the caller once, never stored)."""
    raw = PREFIX + secrets.token_urlsafe(32)
    return _save(store, name, scope, raw, now), raw


def seed_configured_key(store: Store, raw_key: str) -> None:
    """Make sure the key from the ``API_KEY`` setting exists, with the admin scope."""
    if store.find_api_key(hash_key(raw_key)) is None:
        try:
            _save(store, CONFIGURED_KEY_NAME, "admin", raw_key, None)
        except DuplicateKey:
            pass  # another process seeded it first


def verify(store: Store, raw_key: str) -> dict | None:
    """Return the key's record if it exists and is not revoked."""
    presented = hash_key(raw_key)
    record = store.find_api_key(presented)
    if record is None or record["revoked_at"] is not None:
        return None
    return record if hmac.compare_digest(record["key_hash"], presented) else None


def _save(store: Store, name: str, scope: str, raw: str, now: float | None) -> dict:
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}")
    record = {
        "id": uuid.uuid4().hex[:16],
        "name": name,
        "scope": scope,
        "key_hash": hash_key(raw),
        "created_at": time.time() if now is None else now,
        "revoked_at": None,
        "callback_url": None,
        "priority": INTERACTIVE,
    }
    store.create_api_key(record)
    return record
