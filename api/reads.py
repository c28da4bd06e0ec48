"""Reading one session: ownership, the shared cache, and the ETag that makes polling cheap.

A finished session's read is rendered once and cached as bytes in Redis (``CACHE_TTL_SESSIONS``)
with its ETag and owner; every write that can change a finished session drops the entry
(``shared.store.cached``). A session whose round is queued or running is rendered on every read:
it changes with each call the round makes. A caller that may not see a session gets the same 404
as for one that does not exist.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from flask import current_app

from api.auth import Caller
from api.errors import not_found
from api.present import private_session_body
from api.resources import get_cache, get_settings, get_store
from shared.records import UNFINISHED
from shared.store.cached import session_key


@dataclass(frozen=True)
class RenderedSession:
    """A session's client view as bytes, ready to send."""

    body: bytes
    etag: str
    owner: str | None
    unfinished: bool


def visible_session(session_id: str, caller: Caller) -> dict:
    """Return the stored session if the caller may see it; raise 404 otherwise."""
    session = get_store().get_session(session_id)
    if session is None or not caller.may_see(session):
        raise not_found()
    return session


def rendered_session(session_id: str, caller: Caller) -> RenderedSession:
    """Return the session's view from the cache, or render it (and cache it when finished)."""
    cache = get_cache()
    entry, token = cache.read(session_key(session_id))
    if entry is not None:
        rendered = _from_entry(entry)
    else:
        session = get_store().get_session(session_id)
        if session is None:
            raise not_found()
        rendered = render(session)
        if not rendered.unfinished:
            cache.fill(session_key(session_id), _to_entry(rendered),
                       get_settings().cache_ttl_sessions_s, token)
    if not caller.may_see({"owner": rendered.owner}):
        raise not_found()
    return rendered


def render(session: dict) -> RenderedSession:
    """Render a stored session to its client view."""
    body = current_app.json.dumps(private_session_body(session, get_settings().roster)).encode()
    return RenderedSession(
        body=body,
        etag=etag_of(body),
        owner=session.get("owner"),
        unfinished=session["rounds"][-1]["status"] in UNFINISHED,
    )


def etag_of(body: bytes) -> str:
    """Return a strong ETag for a response body."""
    return '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'


def _to_entry(rendered: RenderedSession) -> dict[str, bytes | str]:
    meta = {"etag": rendered.etag, "owner": rendered.owner, "unfinished": rendered.unfinished}
    return {"meta": json.dumps(meta), "body": rendered.body}


def _from_entry(entry: dict[bytes, bytes]) -> RenderedSession:
    meta = json.loads(entry[b"meta"])
    return RenderedSession(body=entry[b"body"], etag=meta["etag"], owner=meta["owner"],
                           unfinished=meta["unfinished"])
