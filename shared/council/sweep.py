"""Find rounds that no worker is carrying and put them back on the queue."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from shared.store.base import Store

log = logging.getLogger(__name__)


def sweep_stale_rounds(
    store: Store,
    enqueue: Callable[[str, int], None],
    queued_after_s: float,
    reoffer_after_s: float,
    now: float | None = None,
    limit: int = 100,
) -> int:
    """Re-enqueue rounds stuck in ``queued`` or holding an expired lease; return how many.

    A queued round is offered again after ``queued_after_s`` (long: its message is normally
    still waiting in the broker, maybe behind a backlog), an abandoned one after
    ``reoffer_after_s``. ``queued_at`` moves forward with each offer, so neither is offered
    more often than that however often the sweeper runs.
    """
    now = time.time() if now is None else now
    stale = store.stale_rounds(now, now - queued_after_s, limit, now - reoffer_after_s)
    for session_id, round_no in stale:
        store.touch_queued(session_id, round_no, now)
        enqueue(session_id, round_no)
        log.info("re-enqueued stale round", extra={"session_id": session_id, "round_no": round_no})
    return len(stale)


def purge_expired(
    store: Store, retention_s: float | None, idempotency_ttl_s: float, now: float | None = None
) -> tuple[int, int]:
    """Delete sessions past their retention and idempotency records past their lifetime.

    MongoDB's TTL indexes do the same on their own; the embedded SQLite store relies on this.
    Returns how many sessions and records were removed.
    """
    now = time.time() if now is None else now
    sessions = store.purge_sessions(now - retention_s) if retention_s else 0
    keys = store.purge_idempotency(now - idempotency_ttl_s)
    if sessions or keys:
        log.info("purged expired data", extra={"sessions": sessions, "idempotency_keys": keys})
    return sessions, keys
