"""Refuse new work at once while the broker cannot take it.

A work-creating request asks the broker first, before anything is written: while the broker
cannot be reached the client gets ``503`` with ``Retry-After`` within ``REDIS_SOCKET_TIMEOUT``,
never a hang. (A broker lost between this check and the enqueue still leaves the written round
safe: the sweeper enqueues it once the broker is back.) A Redis broker is asked on every
request: the request's rate limit check, answered by that same Redis a moment before, is the
check; without one it is pinged (one round trip, beside a store write). A separate broker
(``BROKER_URL``, RabbitMQ) costs a connection per check, so its good health is trusted for
``CHECK_EVERY_S``. An unreachable broker is remembered for ``CHECK_EVERY_S`` by each API process,
so during an outage requests are refused without waiting again. The store needs no check of its
own here: its failures already reach the client as ``503`` with ``Retry-After`` (``api.errors``).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref

from flask import g

from api.errors import ApiError
from api.limits import REDIS_ANSWERED
from api.resources import Resources, resources
from shared.queue import queue_for

log = logging.getLogger(__name__)

CHECK_EVERY_S = 1.0
RETRY_AFTER_S = 5

_lock = threading.Lock()
_depths: weakref.WeakKeyDictionary[Resources, dict[str, tuple[float, int | None]]] = (
    weakref.WeakKeyDictionary()  # per process's resources: queue -> (when measured, depth)
)
_refreshing: weakref.WeakKeyDictionary[Resources, set[str]] = (
    weakref.WeakKeyDictionary()  # per process's resources: queues being measured now
)
_seen: weakref.WeakKeyDictionary[Resources, tuple[float, str | None]] = (
    weakref.WeakKeyDictionary()  # per process's resources: (when asked, the error or None)
)


def admit_work(priority: str) -> None:
    """Raise a ``503`` ``ApiError`` unless the broker can take new work of ``priority`` now.

    Work is refused while the broker cannot be reached, and while more than
    ``ADMISSION_MAX_QUEUE_DEPTH`` rounds already wait in the queue it would join: past that
    point a new round would only wait longer, so the client is told to come back.
    """
    current = resources()
    error = broker_error(current)
    if error is None:
        _refuse_when_full(current, queue_for(priority))
    if error is not None:
        raise ApiError(503, "broker_unavailable",
                       "the job queue is unavailable; nothing was stored, try again shortly",
                       {"error": error}, headers={"Retry-After": str(RETRY_AFTER_S)})


def _refuse_when_full(current: Resources, queue: str) -> None:
    depth = _queue_depth(current, queue)
    limit = current.settings.admission_max_queue_depth
    if depth is not None and depth >= limit:
        raise ApiError(503, "queue_full",
                       f"{depth} rounds are waiting in the {queue} queue; try again shortly",
                       headers={"Retry-After": str(RETRY_AFTER_S)})


def _queue_depth(current: Resources, queue: str) -> int | None:
    """Return how many rounds wait in ``queue``, measured at most once a ``CHECK_EVERY_S``.

    One request measures; the others use the last figure meanwhile rather than queue behind it
    (they all did, about once a second, for the length of a broker round trip).
    """
    now = time.monotonic()
    with _lock:
        measured = _depths.setdefault(current, {}).get(queue)
        refreshing = _refreshing.setdefault(current, set())
        if measured is not None and (now - measured[0] < CHECK_EVERY_S or queue in refreshing):
            return measured[1]
        refreshing.add(queue)
    depth = None  # an unknown depth admits the work
    try:
        depth = current.queue_gauge.depth(queue)
    except Exception as error:  # noqa: BLE001 - see above
        log.warning("queue depth unknown", extra={"queue": queue, "error": str(error)})
    finally:
        with _lock:
            refreshing.discard(queue)
            _depths[current][queue] = (time.monotonic(), depth)
    return depth


def broker_error(current: Resources) -> str | None:
    """Return why the broker cannot be reached (``None`` when it can).

    An answer is remembered for ``CHECK_EVERY_S``, except a Redis broker's good health.
    """
    with _lock:
        seen = _seen.get(current)
    if seen is not None and time.monotonic() - seen[0] < CHECK_EVERY_S:
        return seen[1]
    error = _ask_broker(current)
    with _lock:
        if error is None and current.settings.broker_url is None:
            _seen.pop(current, None)
        else:
            _seen[current] = (time.monotonic(), error)
    return error


def _ask_broker(current: Resources) -> str | None:
    settings = current.settings
    try:
        if settings.broker_url is None:  # the broker is the Redis of REDIS_URL
            if not g.get(REDIS_ANSWERED):  # the rate limit check of this request did not ask it
                current.redis.ping()
        else:
            with current.celery.connection_for_write() as connection:
                connection.ensure_connection(max_retries=0,
                                             timeout=settings.redis_socket_timeout_s)
    except Exception as error:  # noqa: BLE001 - any failure means "cannot take work now"
        log.warning("broker unreachable; refusing new work", extra={"error": str(error)})
        return type(error).__name__
    return None
