"""Wake the requests that wait for a round to end, from one Redis subscription per API process.

Workers publish the id of each session whose round ended on ``ROUNDS_FINISHED`` (with the
``round.finished`` event: ``shared/events.py``). One thread per API process subscribes; a request
that waits (``GET /v1/sessions/{id}?wait=N&until=finished``) registers its session and sleeps
until a message names it. A waiting request costs no CPU and no Redis connection of its own, and
a finished round wakes exactly its waiters.

The store stays the truth: a waiter re-reads the session whenever it wakes, and at least every
``HEARTBEAT_S`` anyway, because a message published while this process was not subscribed (Redis
restarting) is lost. While the subscription is down, waiters re-read every ``DOWN_POLL_S``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator

import redis
from redis.exceptions import RedisError

from shared.events import ROUNDS_FINISHED

log = logging.getLogger(__name__)

HEARTBEAT_S = 5.0
DOWN_POLL_S = 0.5
RECONNECT_S = 1.0
LISTEN_TIMEOUT_S = 1.0  # how often the listener looks up from the socket to see if it must stop


class RoundEndings:
    """Waiters by session id, woken by the one listener thread of this process."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._waiters: dict[str, set[threading.Event]] = {}
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def watching(self, session_id: str) -> Iterator[Callable[[float], None]]:
        """Register a waiter for ``session_id``; yield its ``sleep(at_most_s)``.

        Read the session *after* entering, then sleep and read again until it ended: a round
        that ends between the read and the sleep has already woken the waiter.
        """
        self._start()
        woken = threading.Event()
        with self._lock:
            self._waiters.setdefault(session_id, set()).add(woken)
        try:
            yield lambda at_most_s: self._sleep(woken, at_most_s)
        finally:
            with self._lock:
                waiters = self._waiters.get(session_id, set())
                waiters.discard(woken)
                if not waiters:
                    self._waiters.pop(session_id, None)

    def stop(self) -> None:
        """Stop the listener thread (it notices within ``LISTEN_TIMEOUT_S``)."""
        self._stopping.set()

    def _sleep(self, woken: threading.Event, at_most_s: float) -> None:
        limit = HEARTBEAT_S if self._subscribed.is_set() else DOWN_POLL_S
        woken.wait(max(0.0, min(at_most_s, limit)))
        woken.clear()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._listen, name="round-endings",
                                                daemon=True)
                self._thread.start()

    def _listen(self) -> None:
        while not self._stopping.is_set():
            try:
                self._follow()
            except (RedisError, OSError) as error:
                if self._subscribed.is_set():
                    log.warning("round endings unheard while Redis is unreachable; waiting "
                                "requests poll the store", extra={"error": str(error)})
                self._subscribed.clear()
                self._stopping.wait(RECONNECT_S)

    def _follow(self) -> None:
        with contextlib.closing(self._client.pubsub(ignore_subscribe_messages=True)) as pubsub:
            pubsub.subscribe(ROUNDS_FINISHED)
            self._subscribed.set()
            self._wake_all()  # rounds that ended while nobody listened: let their waiters look
            while not self._stopping.is_set():
                message = pubsub.get_message(timeout=LISTEN_TIMEOUT_S)
                if message is not None and message["type"] == "message":
                    self._wake(_text(message["data"]))

    def _wake(self, session_id: str) -> None:
        with self._lock:
            waiters = list(self._waiters.get(session_id, ()))
        for woken in waiters:
            woken.set()

    def _wake_all(self) -> None:
        with self._lock:
            waiters = [woken for group in self._waiters.values() for woken in group]
        for woken in waiters:
            woken.set()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
