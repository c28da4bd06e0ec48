"""The session routes: submit a question, poll it (cheaply), list, ask a follow-up, cancel."""

from __future__ import annotations

import base64
import binascii
import logging
import time

from flask import Blueprint, Response, request
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import RedisError

from api.admission import admit_work
from api.auth import Caller, current_caller
from api.errors import ApiError
from api.events import announce_cancelled, stream_slot
from api.idempotency import idempotent
from api.present import session_summary
from api.reads import RenderedSession, rendered_session, visible_session
from api.resources import get_settings, get_store, resources
from api.schemas import QuestionSchema, SessionCreateSchema
from api.submission import POLL_AFTER_S, accepted, enqueue, json_body, task_key
from shared import records
from shared.store import SessionQuery

log = logging.getLogger(__name__)

bp = Blueprint("sessions", __name__, url_prefix="/v1/sessions")

MAX_PAGE = 100
DEFAULT_PAGE = 20
MAX_WAIT_S = 30
WAIT_STEP_S = 0.25
UNTIL_FINISHED = "finished"


@bp.post("")
@idempotent
def create_session():
    """Persist a new session, then enqueue its first round."""
    settings = get_settings()
    caller = current_caller()
    body = SessionCreateSchema(settings).load(json_body())
    priority = _priority(caller, body["priority"])
    admit_work(priority)
    session = records.new_session(
        body["question"],
        body["members"] or settings.roster.members,
        body["chairman"] or settings.roster.chairman,
        owner=caller.owner,
        mode=body["mode"],
        priority=priority,
        callback_url=body["callback_url"] or _key_default(caller, "callback_url"),
        min_answers=body["min_answers"],
        min_ballots=body["min_ballots"],
    )
    if body["title"]:
        session["title"] = body["title"]
    get_store().create_session(session)
    enqueue(session, 1)
    return accepted(session)


@bp.get("")
def list_sessions():
    """List the caller's sessions, pinned first, then newest first, a page at a time."""
    limit = _page_size(request.args.get("limit"))
    after = _decode_cursor(request.args.get("cursor"))
    query = _session_query(current_caller())
    page = get_store().list_sessions(query, limit + 1, after)
    more = len(page) > limit
    page = page[:limit]
    cursor = _encode_cursor(page[-1]) if more else None
    return {"data": [session_summary(s) for s in page], "next_cursor": cursor}


@bp.get("/<session_id>")
def get_session(session_id: str):
    """Return a session; 304 when unchanged; with ``?wait=N``, wait up to N s for a change.

    ``until=finished`` waits for the last round to end instead of for any change. A wait holds
    a thread, so it takes one of the process's stream slots; with none free it answers at once.
    """
    caller = current_caller()
    rendered = rendered_session(session_id, caller)
    known = request.if_none_match
    wait_s = _wait_seconds(request.args.get("wait"))
    until = _until(request.args.get("until"))
    if wait_s and (rendered.unfinished or until != UNTIL_FINISHED):
        with stream_slot() as held:
            if held and until == UNTIL_FINISHED:
                rendered = _wait_until_finished(session_id, caller, wait_s)
            elif held:
                baseline = known.as_set() if known else {_tag(rendered)}
                rendered = _wait_for_change(session_id, caller, baseline, wait_s, rendered)
    if known.contains(_tag(rendered)):
        return Response(status=304, headers=_read_headers(rendered))
    return Response(rendered.body, mimetype="application/json", headers=_read_headers(rendered))


@bp.post("/<session_id>/rounds")
@idempotent
def add_round(session_id: str):
    """Ask a follow-up question in a new round of the same session."""
    body = QuestionSchema(get_settings().max_question_chars).load(json_body())
    session = visible_session(session_id, current_caller())
    admit_work(session["priority"])
    round_no = len(session["rounds"]) + 1
    appended = records.last_round(session)["status"] not in records.UNFINISHED and (
        get_store().append_round(session_id, records.new_round(round_no, body["question"])))
    if not appended:
        raise ApiError(409, "round_unfinished", "the last round has not finished yet")
    enqueue(session, round_no)
    return accepted(visible_session(session_id, current_caller()))


@bp.post("/<session_id>/cancel")
def cancel_session(session_id: str):
    """Cancel the session's unfinished round (a no-op when it already ended)."""
    caller = current_caller()
    session = visible_session(session_id, caller)
    round_no = len(session["rounds"])
    status = get_store().request_cancel(session_id, round_no, time.time())
    if status == records.CANCELLED:
        _revoke_waiting_task(session_id, round_no)
        if records.last_round(session)["status"] == records.QUEUED:
            announce_cancelled(session, round_no)
    rendered = rendered_session(session_id, caller)
    return Response(rendered.body, mimetype="application/json", headers=_read_headers(rendered))


def _priority(caller: Caller, asked: str | None) -> str:
    allowed = _key_default(caller, "priority") or records.INTERACTIVE
    if asked is None:
        return allowed
    if allowed == records.BATCH and asked != records.BATCH:
        raise ApiError(403, "priority_not_allowed", "this key may submit batch work only")
    return asked


def _key_default(caller: Caller, field: str):
    return (caller.record or {}).get(field)


def _session_query(caller: Caller) -> SessionQuery:
    pinned = request.args.get("pinned")
    if pinned not in (None, "true", "false"):
        raise ApiError(400, "invalid_request", "pinned must be true or false")
    status = request.args.get("status")
    if status is not None and status not in records.UNFINISHED | records.TERMINAL:
        raise ApiError(400, "invalid_request", f"unknown status {status!r}")
    return SessionQuery(
        owner=caller.listed_owner,
        status=status,
        pinned=None if pinned is None else pinned == "true",
        text=request.args.get("q") or None,
    )


def _wait_until_finished(session_id: str, caller: Caller, wait_s: float) -> RenderedSession:
    deadline = time.monotonic() + wait_s
    with resources().round_endings.watching(session_id) as sleep:
        rendered = rendered_session(session_id, caller)  # read after registering: nothing missed
        while rendered.unfinished and (remaining := deadline - time.monotonic()) > 0:
            sleep(remaining)
            rendered = rendered_session(session_id, caller)
    return rendered


def _wait_for_change(
    session_id: str, caller: Caller, baseline: set[str], wait_s: float, rendered: RenderedSession
) -> RenderedSession:
    deadline = time.monotonic() + wait_s
    while _tag(rendered) in baseline and time.monotonic() < deadline:
        time.sleep(WAIT_STEP_S)
        rendered = rendered_session(session_id, caller)
    return rendered


def _tag(rendered: RenderedSession) -> str:
    return rendered.etag.strip('"')


def _read_headers(rendered: RenderedSession) -> dict:
    headers = {"ETag": rendered.etag, "Cache-Control": "no-store"}
    if rendered.unfinished:
        headers["Retry-After"] = str(POLL_AFTER_S)
    return headers


def _revoke_waiting_task(session_id: str, round_no: int) -> None:
    """Revoke the task of a cancelled round, best effort: its claim would refuse it anyway."""
    current = resources()
    try:
        task_id = current.redis.get(task_key(session_id, round_no))
        if task_id:
            current.celery.control.revoke(task_id.decode())
    except (RedisError, BrokerError, OSError) as error:
        log.warning("could not revoke a cancelled round's task",
                    extra={"session_id": session_id, "error": str(error)})


def _wait_seconds(raw: str | None) -> float:
    if raw is None:
        return 0
    try:
        value = float(raw)
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_WAIT_S:
        raise ApiError(400, "invalid_request", f"wait must be a number from 0 to {MAX_WAIT_S}")
    return value


def _until(raw: str | None) -> str | None:
    if raw not in (None, UNTIL_FINISHED):
        raise ApiError(400, "invalid_request", f"until must be {UNTIL_FINISHED!r} when given")
    return raw


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
        return pinned == "1", float(created_at), session_id
    except (binascii.Error, UnicodeDecodeError, ValueError) as error:
        raise ApiError(400, "invalid_cursor", "the cursor is not one this API issued") from error
