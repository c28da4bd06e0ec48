"""Wait for one round to end by following its session's event stream, up to a deadline.

Events wake the waiter at once; the store stays the truth: whenever nothing arrived for a
heartbeat (an event may have been lost while Redis was down) the round is read from the store,
and while Redis cannot be read the store is polled every ``STORE_POLL_S``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from redis.exceptions import RedisError

from shared import records
from shared.events import ROUND_FINISHED, EventLog
from shared.store import Store

log = logging.getLogger(__name__)

START = "0-0"
STORE_POLL_S = 0.5


class RoundWatch:
    """One waiter on one round."""

    def __init__(self, events: EventLog, store: Store, session_id: str, round_no: int,
                 deadline: float, heartbeat_s: float) -> None:
        self.events = events
        self.store = store
        self.session_id = session_id
        self.round_no = round_no
        self.deadline = deadline  # time.monotonic() past which nobody waits
        self.heartbeat_s = heartbeat_s

    def progress(self) -> Iterator[dict | None]:
        """Yield the round's events as they come (``None`` after a silent heartbeat).

        Ends when the round has ended or the deadline has passed.
        """
        after = START
        while (remaining := self.deadline - time.monotonic()) > 0:
            wait_s = min(remaining, self.heartbeat_s)
            batch = self._read(after, wait_s)
            for entry_id, event in batch or ():
                after = entry_id
                yield event
                if event.get("type") == ROUND_FINISHED and event.get("round_no") == self.round_no:
                    return
            if not batch:
                if self.ended():
                    return
                yield None

    def ended(self) -> bool:
        """Tell whether the store says the round has ended."""
        session = self.store.get_session(self.session_id)
        return session is None or session["rounds"][self.round_no - 1]["status"] in (
            records.TERMINAL)

    def _read(self, after: str, wait_s: float) -> list[tuple[str, dict]] | None:
        try:
            return self.events.read(self.session_id, after, max(1, int(wait_s * 1000)))
        except RedisError as error:
            log.warning("progress events unreadable; polling the store", extra={
                "session_id": self.session_id, "error": str(error)})
            time.sleep(min(wait_s, STORE_POLL_S))
            return None
