"""What every work-creating view shares: reading the body, enqueueing, and the 202 answer."""

from __future__ import annotations

import logging

from flask import request, url_for
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import RedisError

from api.errors import ApiError
from api.events import announce_queued
from api.reads import render
from api.resources import enqueue_round, get_store, resources
from shared.queue import queue_for

log = logging.getLogger(__name__)

POLL_AFTER_S = 2
NEVER_OFFERED = 0.0  # queued_at of a round whose enqueue failed: the next sweep offers it
TASK_ID_TTL_S = 7 * 24 * 3600


def json_body() -> dict:
    """Return the request's JSON object; 415 for another content type, 400 when malformed."""
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "malformed_json", "the body must be a JSON object")
    return body


def enqueue(session: dict, round_no: int) -> None:
    """Put a stored round on its queue; if the broker is down the sweeper enqueues it later."""
    announce_queued(session["id"], round_no)  # first, so no worker event can precede it
    try:
        task_id = enqueue_round(session["id"], round_no, queue_for(session["priority"]))
    except (BrokerError, RedisError, OSError) as error:
        log.error("enqueue failed; the sweeper will retry", extra={
            "session_id": session["id"], "round_no": round_no, "error": str(error)})
        get_store().touch_queued(session["id"], round_no, NEVER_OFFERED)
        return
    remember_task(session["id"], round_no, task_id)


def remember_task(session_id: str, round_no: int, task_id: str) -> None:
    """Note which task carries a round, so a cancel can revoke it while it waits."""
    try:
        resources().redis.set(task_key(session_id, round_no), task_id, ex=TASK_ID_TTL_S)
    except RedisError:
        log.warning("could not note the round's task id", extra={"session_id": session_id})


def task_key(session_id: str, round_no: int) -> str:
    """Return the Redis key holding the id of the task that carries a round."""
    return f"llmc:round-task:{session_id}:{round_no}"


def accepted(session: dict, status: int = 202):
    """Answer a submission: the session, where to poll it, and when."""
    rendered = render(session)
    location = url_for("sessions.get_session", session_id=session["id"])
    headers = {"Location": location, "Retry-After": str(POLL_AFTER_S), "ETag": rendered.etag,
               "Content-Type": "application/json"}
    return rendered.body, status, headers
