"""One request per process measures a queue's depth; the others go on with the last figure."""

from __future__ import annotations

import threading
import time

import pytest

from api import admission
from api.resources import Resources

pytestmark = pytest.mark.integration

QUEUE = "interactive"
WAIT_S = 5


class HeldGauge:
    """A queue gauge whose reads can be held, to look at what other requests do meanwhile."""

    def __init__(self, depth: int) -> None:
        self.depth_now = depth
        self.reading = threading.Event()
        self.released = threading.Event()
        self.released.set()

    def depth(self, queue: str) -> int:
        self.reading.set()
        assert self.released.wait(WAIT_S)
        return self.depth_now


def test_requests_use_the_last_depth_while_one_of_them_measures_it(settings):
    current = Resources(settings)
    gauge = current._queue_gauge = HeldGauge(depth=3)
    assert admission._queue_depth(current, QUEUE) == 3
    stale = time.monotonic() - admission.CHECK_EVERY_S - 1
    admission._depths[current][QUEUE] = (stale, 3)

    gauge.depth_now, gauge.reading = 7, threading.Event()
    gauge.released.clear()
    measuring = threading.Thread(target=admission._queue_depth, args=(current, QUEUE))
    measuring.start()
    assert gauge.reading.wait(WAIT_S)
    answers: list[int | None] = []
    other = threading.Thread(target=lambda: answers.append(admission._queue_depth(current, QUEUE)))
    other.start()
    other.join(WAIT_S)
    finished_while_held = not other.is_alive()
    gauge.released.set()
    measuring.join(WAIT_S)
    other.join(WAIT_S)

    assert finished_while_held, "a request waited for another's measurement"
    assert answers == [3]
    assert admission._queue_depth(current, QUEUE) == 7
