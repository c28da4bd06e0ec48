"""Changing sessions: title and pin, soft delete, delete all, branch, share and unshare."""

from __future__ import annotations

import copy
import secrets
import time
import uuid

from flask import Blueprint, url_for

from api.admission import admit_work
from api.auth import current_caller
from api.errors import ApiError, not_found
from api.idempotency import idempotent
from api.present import private_session_body
from api.reads import visible_session
from api.resources import get_settings, get_store
from api.schemas import BranchSchema, DeleteAllSchema, QuestionSchema, SessionPatchSchema
from api.submission import accepted, enqueue, json_body
from shared import records

bp = Blueprint("session_edits", __name__, url_prefix="/v1/sessions")

SHARE_TOKEN_BYTES = 24


@bp.patch("/<session_id>")
def patch_session(session_id: str):
    """Change a session's title or pinned flag."""
    changes = SessionPatchSchema().load(json_body())
    if not changes:
        raise ApiError(400, "invalid_request", "send a title or pinned to change")
    visible_session(session_id, current_caller())
    session = get_store().update_session(session_id, changes, time.time())
    if session is None:
        raise not_found()
    return private_session_body(session, get_settings().roster)


@bp.delete("/<session_id>")
def delete_session(session_id: str):
    """Soft-delete a session: gone from every read, kept in the store until retention."""
    visible_session(session_id, current_caller())
    if not get_store().delete_session(session_id, time.time()):
        raise not_found()
    return "", 204


@bp.delete("")
def delete_all_sessions():
    """Soft-delete every session of the caller; the body must confirm it in words."""
    DeleteAllSchema().load(json_body())
    deleted = get_store().delete_sessions(current_caller().owner, time.time())
    return {"deleted": deleted}


@bp.post("/<session_id>/branch")
@idempotent
def branch_session(session_id: str):
    """Start a new session with the rounds up to ``round_no``; ask ``question`` next if given."""
    body = BranchSchema().load(json_body())
    source = visible_session(session_id, current_caller())
    rounds = _finished_rounds_up_to(source, body["round_no"])
    session = _branch_of(source, rounds)
    if body["question"] is not None:
        admit_work(session["priority"])
        question = QuestionSchema(get_settings().max_question_chars).load(
            {"question": body["question"]})["question"]
        session["rounds"].append(records.new_round(len(rounds) + 1, question))
    session["status"] = records.last_round(session)["status"]
    get_store().create_session(session)
    if body["question"] is None:
        return accepted(session, status=201)
    enqueue(session, len(session["rounds"]))
    return accepted(session)


@bp.post("/<session_id>/share")
def share_session(session_id: str):
    """Return the session's share token and public URL, making one if it has none."""
    session = visible_session(session_id, current_caller())
    token = session["share_token"] or secrets.token_urlsafe(SHARE_TOKEN_BYTES)
    if session["share_token"] is None and not get_store().set_share_token(session_id, token):
        raise not_found()
    return {"token": token, "url": url_for("shared.shared_session", token=token)}


@bp.delete("/<session_id>/share")
def unshare_session(session_id: str):
    """Revoke the share token at once."""
    visible_session(session_id, current_caller())
    get_store().set_share_token(session_id, None)
    return "", 204


def _finished_rounds_up_to(session: dict, round_no: int) -> list[dict]:
    if round_no > len(session["rounds"]):
        raise ApiError(400, "invalid_request", f"the session has no round {round_no}")
    rounds = session["rounds"][:round_no]
    if rounds[-1]["status"] in records.UNFINISHED:
        raise ApiError(409, "round_unfinished", f"round {round_no} has not finished yet")
    return copy.deepcopy(rounds)


def _branch_of(source: dict, rounds: list[dict]) -> dict:
    now = time.time()
    return {
        **records.new_session(
            source["rounds"][0]["question"], source["members"], source["chairman"],
            owner=current_caller().owner, now=now, mode=source["mode"],
            priority=source["priority"], callback_url=source["callback_url"],
            branched_from={"session_id": source["id"], "round_no": len(rounds)},
        ),
        "id": uuid.uuid4().hex,
        "title": source["title"],
        "rounds": rounds,
    }
