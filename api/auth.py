"""Who is calling: API keys with scopes, and which sessions a caller may see.

When no key exists (and ``API_KEY`` is unset) the API is open and every caller acts as admin; the
``up`` command says so loudly. Once a key exists, every route except the public ones needs one,
as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, g, request

from api.errors import ApiError
from api.resources import get_store
from shared import keys

PUBLIC_ENDPOINTS = frozenset({"health.health", "health.ready", "static",
                              "observability.public_metrics", "openapi.document"})
PUBLIC_PREFIXES = ("shared.", "console.")  # console pages are shells: data needs a key


@dataclass(frozen=True)
class Caller:
    """The key behind a request (``key_id`` None when the API is open)."""

    key_id: str | None
    scope: str
    record: dict | None = None

    @property
    def owner(self) -> str | None:
        """Return the owner recorded on sessions this caller creates."""
        return self.key_id

    @property
    def is_admin(self) -> bool:
        return self.scope == "admin"

    @property
    def listed_owner(self) -> str | None:
        """Return whose sessions this caller lists and exports (``None``: everyone's)."""
        return None if self.is_admin else self.key_id

    def may_see(self, session: dict) -> bool:
        """Return whether the caller may read or change this session."""
        return self.is_admin or session.get("owner") == self.key_id


OPEN = Caller(key_id=None, scope="admin")


def init_app(app: Flask) -> None:
    """Identify the caller of every request before its view runs."""
    app.before_request(_identify)


def current_caller() -> Caller:
    """Return the caller of the current request."""
    return g.caller


def require_admin() -> None:
    """Refuse callers without the admin scope."""
    if not current_caller().is_admin:
        raise ApiError(403, "forbidden", "this route needs an admin key")


def _identify() -> None:
    if request.endpoint in PUBLIC_ENDPOINTS or (request.endpoint or "").startswith(
        PUBLIC_PREFIXES
    ):
        g.caller = OPEN
        return
    presented = _presented_key()
    if presented is None:
        if _keys_exist():
            raise _unauthorized("an API key is required")
        g.caller = OPEN
        return
    record = keys.verify(get_store(), presented)
    if record is None:
        raise _unauthorized("the API key is not valid")
    g.caller = Caller(key_id=record["id"], scope=record["scope"], record=record)


def _presented_key() -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return request.headers.get("X-API-Key") or None


def _keys_exist() -> bool:
    return bool(get_store().list_api_keys())


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})
