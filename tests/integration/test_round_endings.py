"""Requests waiting for a round to end are woken by the worker's publish, not by a timer."""

from __future__ import annotations

import threading

import pytest
import redis

from api import round_endings
from api.round_endings import RoundEndings
from shared.events import ROUND_FINISHED, ROUNDS_FINISHED, EventLog
from tests.support.processes import wait_for

pytestmark = pytest.mark.integration

SLEEP_S = 30  # each waiter would sleep this long if nothing woke it


@pytest.fixture
def endings(redis_server, monkeypatch):
    monkeypatch.setattr(round_endings, "HEARTBEAT_S", 60.0)
    endings = RoundEndings(redis_server.client())
    yield endings
    endings.stop()


def _sleeper(endings: RoundEndings, session_id: str, woke: list[str]) -> threading.Thread:
    ready = threading.Event()

    def wait() -> None:
        with endings.watching(session_id) as sleep:
            ready.set()
            sleep(SLEEP_S)
        woke.append(session_id)

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    ready.wait(5)
    return thread


def test_a_finished_round_wakes_its_waiters_and_no_others(endings, redis_server):
    def listeners() -> int:  # API processes of earlier tests may listen on this server too
        return redis_server.client().pubsub_numsub(ROUNDS_FINISHED)[0][1]

    others = listeners()
    with endings.watching("s-0"):  # the first waiter starts the listener (and is woken by it)
        wait_for(lambda: listeners() == others + 1, "the listener to subscribe")
    woke: list[str] = []
    first = _sleeper(endings, "s-1", woke)
    second = _sleeper(endings, "s-1", woke)
    other = _sleeper(endings, "s-2", woke)

    events = EventLog(redis_server.client(), max_len=100, ttl_s=60)
    events.append("s-1", {"type": "answer.recorded", "round_no": 1, "member": "m", "ok": True})
    events.append("s-1", {"type": ROUND_FINISHED, "round_no": 1, "status": "completed"})

    first.join(10)
    second.join(10)
    assert woke == ["s-1", "s-1"]
    assert other.is_alive(), "a round of another session wakes nobody here"


def test_waiters_poll_while_the_subscription_is_down(monkeypatch):
    monkeypatch.setattr(round_endings, "RECONNECT_S", 0.1)
    unreachable = RoundEndings(redis.Redis(port=1, socket_connect_timeout=0.2))
    woke: list[str] = []
    waiter = _sleeper(unreachable, "s-1", woke)
    waiter.join(10)  # DOWN_POLL_S, not SLEEP_S: the waiter goes back to read the store
    unreachable.stop()
    assert woke == ["s-1"]
