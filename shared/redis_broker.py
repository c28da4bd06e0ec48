"""Kombu's Redis transport, keeping one Redis client per channel for its one-off commands.

Kombu makes a new ``redis.Redis`` object for every publish, ack and queue-length check
(``Channel.conn_or_acquire``), and redis-py's constructor copies its table of about 200 response
callbacks each time: a quarter of a millisecond of CPU per submit in the API, and about 0.8 ms per
round in a worker, which publishes three task events and an ack (bench/RESULTS.md). A client is
only a handle on the channel's connection pool and is safe to share between threads, so one per
channel will do; pipelines are still made per use. Celery uses this transport for ``redis://``
brokers (``shared.queue.celery_config``).
"""

from __future__ import annotations

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    """A Redis channel whose synchronous client is made once."""

    _one_off_client = None

    def _create_client(self, asynchronous: bool = False):
        if asynchronous:  # kombu keeps that one itself (``Channel.client``)
            return super()._create_client(asynchronous=True)
        if self._one_off_client is None:
            self._one_off_client = super()._create_client()
        return self._one_off_client


class Transport(kombu_redis.Transport):
    """Kombu's Redis transport with ``Channel`` above."""

    Channel = Channel
