"""Reading sessions out: JSON and Markdown exports, and the public view of a shared session."""

from __future__ import annotations

import json

from flask import Blueprint, Response, request, stream_with_context

from api.auth import current_caller
from api.errors import ApiError, not_found
from api.markdown import session_markdown
from api.present import private_session_body, session_body
from api.reads import visible_session
from api.resources import get_settings, get_store
from shared.store import SessionQuery

bp = Blueprint("exports", __name__, url_prefix="/v1/sessions")
public = Blueprint("shared", __name__, url_prefix="/v1/shared")

FORMATS = ("json", "markdown")
EXPORT_PAGE = 100


@bp.get("/<session_id>/export")
def export_session(session_id: str):
    """Download one session as JSON or Markdown."""
    fmt = _format()
    session = visible_session(session_id, current_caller())
    body = private_session_body(session, get_settings().roster)
    name = f"council-{session_id}"
    if fmt == "markdown":
        return _download(session_markdown(body), "text/markdown; charset=utf-8", f"{name}.md")
    return _download(json.dumps(body, indent=2), "application/json", f"{name}.json")


@bp.get("/export")
def export_all_sessions():
    """Stream every session of the caller, as one JSON array or one Markdown document."""
    fmt = _format()
    bodies = _all_bodies(SessionQuery(owner=current_caller().listed_owner))
    if fmt == "markdown":
        chunks = (session_markdown(body) + "\n\n---\n\n" for body in bodies)
        mimetype, name = "text/markdown; charset=utf-8", "council-sessions.md"
    else:
        chunks = _json_array(bodies)
        mimetype, name = "application/json", "council-sessions.json"
    return _download(stream_with_context(chunks), mimetype, name)


@public.get("/<token>")
def shared_session(token: str):
    """Return a shared session, read-only and without a key (no owner or callback data)."""
    session = get_store().get_shared_session(token)
    if session is None:
        raise not_found("shared session")
    return session_body(session, get_settings().roster), 200, {"Cache-Control": "no-store"}


def _all_bodies(query: SessionQuery):
    store, roster = get_store(), get_settings().roster
    after = None
    while True:
        page = store.list_sessions(query, EXPORT_PAGE, after)
        for session in page:
            yield private_session_body(session, roster)
        if len(page) < EXPORT_PAGE:
            return
        last = page[-1]
        after = (last["pinned"], last["created_at"], last["id"])


def _json_array(bodies):
    yield "["
    for index, body in enumerate(bodies):
        yield ("," if index else "") + json.dumps(body)
    yield "]"


def _format() -> str:
    fmt = request.args.get("format", "json")
    if fmt not in FORMATS:
        raise ApiError(400, "invalid_request", f"format must be one of {', '.join(FORMATS)}")
    return fmt


def _download(content, mimetype: str, filename: str) -> Response:
    response = Response(content, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "no-store"
    return response
