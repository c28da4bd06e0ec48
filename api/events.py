"""A session's live progress as Server-Sent Events, read from its Redis stream.

``GET /v1/sessions/{id}/events`` replays the session's events from the start, or from after the
entry named by ``Last-Event-ID`` (or ``?last_event_id=``), then follows the stream with a
blocking XREAD, writing a ``: ping`` comment whenever nothing arrived for
``SSE_HEARTBEAT_SECONDS``. Each event is written with ``id:`` (its stream entry id), ``event:``
(its type) and ``data:`` (its JSON), so a client that reconnects with the last id it saw gets
exactly what it missed. The stream ends after the ``round.finished`` event of the session's last
round. When that round had already ended, it ends after the replay, and a request with nothing
left to replay gets ``204``, which tells a browser's ``EventSource`` to stop reconnecting.

The API also writes the events that no worker sees: ``round.queued`` when it enqueues a round,
and ``round.finished`` when a cancel ends a round that was still waiting in the queue.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterator

from flask import Blueprint, Response, current_app, request
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import RedisError

from api.auth import current_caller
from api.errors import ApiError
from api.reads import visible_session
from api.resources import EXTENSION, get_settings, get_store, resources
from shared import records
from shared.events import ROUND_FINISHED, ROUND_QUEUED, EventLog, valid_entry_id
from shared.logs import log_ids
from shared.queue import DELIVER_WEBHOOK, WEBHOOKS_QUEUE, message_headers
from shared.store import Store

log = logging.getLogger(__name__)

bp = Blueprint("events", __name__, url_prefix="/v1/sessions")

START = "0-0"
RETRY_MS = 2000  # how long an EventSource waits before it reconnects
MAX_STREAM_S = 3600  # then the client reconnects with Last-Event-ID: no stream lives forever
REPLAY_BATCH = 100
RETRY_AFTER_S = 5
STREAM_SLOTS = "llm_council_streams"


@bp.record_once
def _init_slots(state) -> None:
    settings = state.app.extensions[EXTENSION].settings
    state.app.extensions[STREAM_SLOTS] = threading.BoundedSemaphore(settings.sse_max_streams)


@contextlib.contextmanager
def stream_slot() -> Iterator[bool]:
    """Hold one of this process's stream slots for a waiting request; yield False if none is free.

    Event streams, waiting polls and chat completions all hold a gunicorn thread while they
    wait: the slots keep enough threads free for every other request.
    """
    slots = current_app.extensions[STREAM_SLOTS]
    held = slots.acquire(blocking=False)
    try:
        yield held
    finally:
        if held:
            slots.release()


@bp.get("/<session_id>/events")
def session_events(session_id: str):
    """Stream the session's progress events, resuming after ``Last-Event-ID``."""
    session = visible_session(session_id, current_caller())
    after = _last_event_id()
    slots = current_app.extensions[STREAM_SLOTS]
    if not slots.acquire(blocking=False):
        raise ApiError(503, "too_many_streams", "this API process serves as many streams as it "
                       "may; try again shortly", headers={"Retry-After": str(RETRY_AFTER_S)})
    try:
        response = _stream_response(session, after)
    except BaseException:
        slots.release()
        raise
    response.call_on_close(slots.release)
    return response


def _stream_response(session: dict, after: str) -> Response:
    stream = SessionStream(resources().events, get_store(), session["id"],
                           get_settings().sse_heartbeat_s)
    try:
        first = stream.events.read(session["id"], after, count=REPLAY_BATCH)
    except RedisError as error:
        log.warning("progress stream unavailable", extra={"error": str(error)})
        raise ApiError(503, "events_unavailable", "progress events are unavailable right now",
                       headers={"Retry-After": str(RETRY_AFTER_S)}) from error
    ended = _last_round_ended(session)
    if ended and not first:
        return Response(status=204)
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return Response(stream.frames(first, after, ended), mimetype="text/event-stream",
                    headers=headers)


class SessionStream:
    """One client's view of a session's event stream."""

    def __init__(self, events: EventLog, store: Store, session_id: str, heartbeat_s: float):
        self.events = events
        self.store = store
        self.session_id = session_id
        self.block_ms = max(1, int(heartbeat_s * 1000))

    def frames(self, batch: list[tuple[str, dict]], after: str, ended: bool) -> Iterator[str]:
        """Yield the SSE frames: ``batch``, then what follows ``after`` until the round ends."""
        yield f"retry: {RETRY_MS}\n\n"
        deadline = time.monotonic() + MAX_STREAM_S
        while True:
            for entry_id, event in batch:
                yield frame(entry_id, event)
                after = entry_id
                if event.get("type") == ROUND_FINISHED and self._is_last(event["round_no"]):
                    return
            if time.monotonic() > deadline:
                return
            try:
                batch = self.events.read(self.session_id, after, None if ended else self.block_ms)
            except RedisError as error:
                log.warning("progress stream broken off", extra={
                    "session_id": self.session_id, "error": str(error)})
                return
            if batch:
                continue
            if ended:
                return
            yield ": ping\n\n"
            # A round can end without its event (lost while Redis was down, or never sent).
            ended = self._ended()

    def _is_last(self, round_no: int) -> bool:
        session = self.store.get_session(self.session_id)
        return session is None or round_no >= len(session["rounds"])

    def _ended(self) -> bool:
        session = self.store.get_session(self.session_id)
        return session is None or _last_round_ended(session)


def frame(entry_id: str, event: dict) -> str:
    """Return one event as an SSE frame."""
    data = json.dumps(event, separators=(",", ":"))
    return f"id: {entry_id}\nevent: {event.get('type', 'message')}\ndata: {data}\n\n"


def announce_queued(session_id: str, round_no: int) -> None:
    """Append ``round.queued`` (dropped with a warning when Redis is down)."""
    _api_events().append(session_id, {"type": ROUND_QUEUED, "round_no": round_no})


def announce_cancelled(session: dict, round_no: int) -> None:
    """Tell listeners that a cancel ended a round before any worker took it."""
    status = records.CANCELLED
    _api_events().append(session["id"], {"type": ROUND_FINISHED, "round_no": round_no,
                                         "status": status})
    if not session.get("callback_url"):
        return
    try:
        resources().celery.send_task(DELIVER_WEBHOOK, args=[session["id"], round_no],
                                     queue=WEBHOOKS_QUEUE, retry=False,
                                     headers=message_headers(log_ids().get("request_id")))
    except (BrokerError, RedisError, OSError) as error:
        log.error("webhook not enqueued", extra={
            "session_id": session["id"], "round_no": round_no, "error": str(error)})


def _api_events() -> EventLog:
    settings = get_settings()
    return EventLog(resources().redis, settings.events_max_len, settings.events_ttl_s)


def _last_event_id() -> str:
    raw = request.headers.get("Last-Event-ID") or request.args.get("last_event_id") or START
    if not valid_entry_id(raw.strip()):
        raise ApiError(400, "invalid_last_event_id", "Last-Event-ID must be an event id "
                       "this stream sent")
    return raw.strip()


def _last_round_ended(session: dict) -> bool:
    return records.last_round(session)["status"] in records.TERMINAL
