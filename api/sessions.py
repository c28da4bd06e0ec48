"""The session routes: submit a question, poll, list, ask a follow-up, cancel."""

from __future__ import annotations

import base64
import binascii
import logging
import time

from flask import Blueprint, request, url_for
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import RedisError

from api.errors import ApiError, not_found
from api.present import session_body, session_summary
from api.resources import enqueue_round, get_settings, get_store
from api.schemas import QuestionSchema, SessionCreateSchema
from shared import records
from shared.store import SessionQuery

log = logging.getLogger(__name__)

bp = Blueprint("sessions", __name__, url_prefix="/v1/sessions")

POLL_AFTER_S = 2
MAX_PAGE = 100
DEFAULT_PAGE = 20


@bp.post("")
def create_session():
    """Persist a new session, then enqueue its first round."""
    settings = get_settings()
    schema = SessionCreateSchema(settings.max_question_chars, settings.roster)
    body = schema.load(_json_body())
    session = records.new_session(
        body["question"],
        body["members"] or settings.roster.members,
        body["chairman"] or settings.roster.chairman,
    )
    get_store().create_session(session)
    _enqueue(session["id"], 1)
    return _accepted(session)


@bp.get("")
def list_sessions():
    """List sessions, pinned first, then newest first, a page at a time."""
    limit = _page_size(request.args.get("limit"))
    after = _decode_cursor(request.args.get("cursor"))
    page = get_store().list_sessions(SessionQuery(), limit + 1, after)
    more = len(page) > limit
    page = page[:limit]
    cursor = _encode_cursor(page[-1]) if more else None
    return {"data": [session_summary(s) for s in page], "next_cursor": cursor}


@bp.get("/<session_id>")
def get_session(session_id: str):
    """Return a session with all its rounds."""
    session = _session_or_404(session_id)
    headers = {"Retry-After": str(POLL_AFTER_S)} if _unfinished(session) else {}
    return session_body(session, get_settings().roster), 200, headers


@bp.post("/<session_id>/rounds")
def add_round(session_id: str):
    """Ask a follow-up question in a new round of the same session."""
    settings = get_settings()
    body = QuestionSchema(settings.max_question_chars).load(_json_body())
    session = _session_or_404(session_id)
    round_no = len(session["rounds"]) + 1
    if _unfinished(session) or not get_store().append_round(
        session_id, records.new_round(round_no, body["question"])
    ):
        raise ApiError(409, "round_unfinished", "the last round has not finished yet")
    _enqueue(session_id, round_no)
    return _accepted(_session_or_404(session_id))


@bp.post("/<session_id>/cancel")
def cancel_session(session_id: str):
    """Cancel the session's unfinished round (a no-op when it already ended)."""
    session = _session_or_404(session_id)
    round_no = len(session["rounds"])
    get_store().request_cancel(session_id, round_no, time.time())
    return session_body(_session_or_404(session_id), get_settings().roster)


def _json_body() -> dict:
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "malformed_json", "the body must be a JSON object")
    return body


def _session_or_404(session_id: str) -> dict:
    session = get_store().get_session(session_id)
    if session is None:
        raise not_found()
    return session


def _unfinished(session: dict) -> bool:
    return records.last_round(session)["status"] in records.UNFINISHED


def _enqueue(session_id: str, round_no: int) -> None:
    try:
        enqueue_round(session_id, round_no)
    except (BrokerError, RedisError, OSError) as error:
        # The round is stored as queued; the sweeper enqueues it once the broker is back.
        log.error("enqueue failed; the sweeper will retry",
                  extra={"session_id": session_id, "round_no": round_no, "error": str(error)})


def _accepted(session: dict):
    location = url_for("sessions.get_session", session_id=session["id"])
    headers = {"Location": location, "Retry-After": str(POLL_AFTER_S)}
    return session_body(session, get_settings().roster), 202, headers


def _page_size(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_PAGE
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise ApiError(400, "invalid_request", f"limit must be a whole number from 1 to {MAX_PAGE}")
    return int(raw)


def _encode_cursor(session: dict) -> str:
    raw = f"{int(session['pinned'])}|{session['created_at']!r}|{session['id']}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> tuple[bool, float, str] | None:
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        pinned, created_at, session_id = raw.split("|", 2)
        return bool(int(pinned)), float(created_at), session_id
    except (binascii.Error, UnicodeDecodeError, ValueError) as error:
        raise ApiError(400, "invalid_cursor", "the cursor is not one this API issued") from error
