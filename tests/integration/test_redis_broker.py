"""The Redis transport keeps one client per channel and still moves messages as Kombu's does."""

from __future__ import annotations

import pytest
from kombu import Connection

from shared.queue import REDIS_TRANSPORT

pytestmark = pytest.mark.integration


def test_a_channel_makes_its_client_once_and_messages_still_go_through(redis_server):
    redis_server.client().flushall()
    with Connection(redis_server.url, transport=REDIS_TRANSPORT) as connection:
        channel = connection.default_channel
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is second
        queue = connection.SimpleQueue("broker-transport-check")
        try:
            queue.put({"round": 1})
            queue.put({"round": 2})
            received = [queue.get(timeout=5) for _ in range(2)]
            for message in received:
                message.ack()
            assert [m.payload for m in received] == [{"round": 1}, {"round": 2}]
            with pytest.raises(queue.Empty):
                queue.get(timeout=0.2)
        finally:
            queue.close()
