"""Each session's progress as a Redis Stream, which the SSE endpoint replays and follows.

One stream per session (``llmc:events:{session_id}``), trimmed to about ``EVENTS_MAX_LEN``
entries and expiring ``EVENTS_TTL_SECONDS`` after its last write. An entry holds one small JSON
event: its ``type``, the ``round_no`` and a few ids or statuses, never an answer or a prompt
(clients read the session for content)::

    round.queued        {round_no}                       the API stored and enqueued a round
    stage.started       {round_no, stage}                answers, rankings or synthesis
    answer.recorded     {round_no, member, ok}           a member answered (or failed to)
    ballot.recorded     {round_no, reviewer, valid}      a ballot was checkpointed
    synthesis.recorded  {round_no, model, ok}            the final answer was written (or not)
    round.finished      {round_no, status}               the round reached a terminal status

Every ``round.finished`` is also published, with its session's id, on ``ROUNDS_FINISHED``
(Redis pub/sub), in the same round trip: API processes wake the requests that wait for a round to
end (``api/round_endings.py``) from one subscription each, instead of following every stream.

The store stays the truth: an event that cannot be written (Redis down) is dropped and logged
at WARNING, and never fails the round or the request that produced it.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import threading
import time
from collections.abc import Iterable

import redis
from redis.exceptions import RedisError

from shared.redis_client import connect_redis
from shared.settings import Settings

log = logging.getLogger(__name__)

KEY_PREFIX = "llmc:events:"
FIELD = b"event"
ROUND_QUEUED = "round.queued"
ROUND_FINISHED = "round.finished"
ROUNDS_FINISHED = "llmc:rounds:finished"  # pub/sub: the id of each session whose round ended
ENTRY_ID = re.compile(r"^\d{1,20}(-\d{1,20})?$")

# The round engine's event kinds (``Council.on_event``), the type each becomes, and the only
# fields of its data that are published.
ENGINE_EVENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "stage": ("stage.started", ("stage",)),
    "answer": ("answer.recorded", ("member", "ok")),
    "ballot": ("ballot.recorded", ("reviewer", "valid")),
    "synthesis": ("synthesis.recorded", ("model", "ok")),
    "finished": (ROUND_FINISHED, ("status",)),
}

PUBLISH_QUEUE_SIZE = 10_000
PUBLISH_BATCH = 500
# The publisher lets events gather this long before a round trip: at 100 rounds in flight it
# otherwise woke and paid a round trip for every one or two events, ~2.5 ms of CPU per round.
PUBLISH_LINGER_S = 0.01
CLOSE_TIMEOUT_S = 5.0
STREAM_POOL_SPARE = 10


def open_event_log(settings: Settings, *, blocking: bool = False) -> EventLog:
    """Return an event log on a client of its own; a ``blocking`` one outwaits a heartbeat."""
    if blocking:  # each stream's XREAD holds a connection for up to a heartbeat
        client = connect_redis(
            settings, read_timeout_s=settings.sse_heartbeat_s + settings.redis_socket_timeout_s,
            max_connections=settings.sse_max_streams + STREAM_POOL_SPARE)
    else:
        client = connect_redis(settings)
    return EventLog(client, settings.events_max_len, settings.events_ttl_s)


def stream_key(session_id: str) -> str:
    """Return the Redis key of a session's event stream."""
    return KEY_PREFIX + session_id


def engine_event(round_no: int, kind: str, data: dict) -> dict | None:
    """Turn a round engine event into a published one (``None`` for a kind not published)."""
    spec = ENGINE_EVENTS.get(kind)
    if spec is None:
        return None
    event_type, fields = spec
    return {"type": event_type, "round_no": round_no, **{f: data.get(f) for f in fields}}


class EventLog:
    """Append events to session streams and read them back, on one Redis client."""

    def __init__(self, client: redis.Redis, max_len: int, ttl_s: int) -> None:
        self.client = client
        self.max_len = max_len
        self.ttl_s = ttl_s

    def append(self, session_id: str, event: dict) -> bool:
        """Append one event; return False (after a warning) when Redis did not take it."""
        return self.append_many([(session_id, event)])

    def append_many(self, events: Iterable[tuple[str, dict]]) -> bool:
        """Append events in one round trip, in order; return False when they were dropped."""
        pipe = self.client.pipeline(transaction=False)
        keys: list[str] = []
        for session_id, event in events:
            key = stream_key(session_id)
            pipe.xadd(key, {FIELD: json.dumps(event)}, maxlen=self.max_len, approximate=True)
            if event["type"] == ROUND_FINISHED:
                pipe.publish(ROUNDS_FINISHED, session_id)
            keys.append(key)
        for key in dict.fromkeys(keys):
            pipe.expire(key, self.ttl_s)
        try:
            pipe.execute()
        except RedisError as error:
            log.warning("progress events dropped: Redis did not take them",
                        extra={"events": len(keys), "error": str(error)})
            return False
        return True

    def read(
        self, session_id: str, after: str, block_ms: int | None = None, count: int = 100
    ) -> list[tuple[str, dict]]:
        """Return up to ``count`` events after entry ``after``, waiting up to ``block_ms``."""
        reply = self.client.xread({stream_key(session_id): after}, count=count, block=block_ms)
        if not reply:
            return []
        return [(_text(entry_id), json.loads(_field(fields))) for entry_id, fields in reply[0][1]]


class EventPublisher:
    """The Council's ``on_event``: hands events to one thread that appends them, in order.

    The round engine calls ``on_event`` on the worker's event loop, where a Redis round trip
    would stall every round of the process (for the whole socket timeout when Redis is down).
    Here the loop only puts the event on a bounded queue; the thread drains it in batches, each
    gathered for ``PUBLISH_LINGER_S`` (progress reaches listeners that much later).
    """

    def __init__(self, events: EventLog, capacity: int = PUBLISH_QUEUE_SIZE) -> None:
        self.events = events
        self._queue: queue.Queue = queue.Queue(capacity)
        self._thread = threading.Thread(target=self._run, name="event-publisher", daemon=True)
        self._thread.start()

    def __call__(self, session_id: str, round_no: int, kind: str, data: dict) -> None:
        event = engine_event(round_no, kind, data)
        if event is None:
            return
        try:
            self._queue.put_nowait((session_id, event))
        except queue.Full:
            log.warning("progress event dropped: the publish queue is full", extra={
                "session_id": session_id, "round_no": round_no, "type": event["type"]})

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Publish what is queued (waiting at most ``timeout_s``), then stop the thread."""
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:
            return
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            if batch[0] is not None:
                time.sleep(PUBLISH_LINGER_S)  # puts meanwhile wake no one
            while len(batch) < PUBLISH_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            stop = None in batch
            events = [item for item in batch if item is not None]
            if events:
                self.events.append_many(events)
            if stop:
                return


def valid_entry_id(value: str) -> bool:
    """Tell whether ``value`` is a stream entry id (``<ms>-<seq>`` or ``<ms>``)."""
    return bool(ENTRY_ID.match(value))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _field(fields: dict) -> bytes | str:
    return fields[FIELD] if FIELD in fields else fields[FIELD.decode()]
