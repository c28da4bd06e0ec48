"""Refuse new work at once while the broker cannot take it.

A work-creating request asks the broker first, before anything is written: while the broker
cannot be reached the client gets ``503`` with ``Retry-After`` within ``REDIS_SOCKET_TIMEOUT``,
never a hang. (A broker lost between this check and the enqueue still leaves the written round
safe: the sweeper enqueues it once the broker is back.) A Redis broker is pinged on every
request (one round trip, beside a store write); a separate broker (``BROKER_URL``, RabbitMQ)
costs a connection per check, so its good health is trusted for ``CHECK_EVERY_S``. An unreachable
broker is remembered for ``CHECK_EVERY_S`` by each API process, so during an outage requests are
refused without waiting again. The store needs no check of its own here: its failures already
reach the client as ``503`` with ``Retry-After`` (``api.errors``).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref

from api.errors import ApiError
from api.resources import Resources, resources

log = logging.getLogger(__name__)

CHECK_EVERY_S = 1.0
RETRY_AFTER_S = 5

_lock = threading.Lock()
_seen: weakref.WeakKeyDictionary[Resources, tuple[float, str | None]] = (
    weakref.WeakKeyDictionary()  # per process's resources: (when asked, the error or None)
)


def admit_work() -> None:
    """Raise a ``503`` ``ApiError`` unless the broker can take new work right now."""
    error = broker_error(resources())
    if error is not None:
        raise ApiError(503, "broker_unavailable",
                       "the job queue is unavailable; nothing was stored, try again shortly",
                       {"error": error}, headers={"Retry-After": str(RETRY_AFTER_S)})


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
            current.redis.ping()
        else:
            with current.celery.connection_for_write() as connection:
                connection.ensure_connection(max_retries=0,
                                             timeout=settings.redis_socket_timeout_s)
    except Exception as error:  # noqa: BLE001 - any failure means "cannot take work now"
        log.warning("broker unreachable; refusing new work", extra={"error": str(error)})
        return type(error).__name__
    return None
