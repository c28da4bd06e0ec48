"""The session cache against a real Redis server: a write never leaves a superseded read behind.

Each ``Cache`` here stands for one process (an API worker, a Celery worker); they share nothing
but the Redis server.
"""

from __future__ import annotations

import threading

import pytest
import redis

from shared.cache import Cache

pytestmark = pytest.mark.integration

KEY = "session:abc"
OLD = {"body": b"old"}
NEW = {"body": b"new"}


@pytest.fixture
def caches(redis_server):
    redis_server.client().flushall()
    clients = [redis.Redis.from_url(redis_server.url) for _ in range(2)]
    yield [Cache(client) for client in clients]
    for client in clients:
        client.close()


def test_a_drop_removes_the_entry_and_refuses_a_fill_from_before_it(caches):
    reader, writer = caches
    entry, token = reader.read(KEY)
    assert entry is None
    reader.fill(KEY, OLD, 60, token)
    assert reader.read(KEY)[0] == {b"body": b"old"}

    _, stale_token = reader.read(KEY)  # a reader that read the store before the write...
    writer.drop(KEY)
    reader.fill(KEY, OLD, 60, stale_token)  # ...may not cache what it read
    entry, token = reader.read(KEY)
    assert entry is None
    reader.fill(KEY, NEW, 60, token)  # a reader that started after the write may
    assert reader.read(KEY)[0] == {b"body": b"new"}


def test_drops_from_many_threads_at_once_each_return_only_once_their_key_is_gone(caches):
    reader, writer = caches
    keys = [f"session:{n}" for n in range(64)]
    for key in keys:
        reader.fill(key, OLD, 60, reader.read(key)[1])
    start = threading.Barrier(len(keys))
    still_cached = []

    def write(key: str) -> None:
        start.wait()
        writer.drop(key)
        if reader.read(key)[0] is not None:
            still_cached.append(key)

    threads = [threading.Thread(target=write, args=(key,)) for key in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert still_cached == []
    assert all(reader.read(key)[0] is None for key in keys)


def test_with_redis_unreachable_a_drop_returns_and_the_cache_runs_on_memory():
    client = redis.Redis(port=1, socket_timeout=0.2, socket_connect_timeout=0.2)
    cache = Cache(client)
    cache.drop(KEY)
    assert cache.degraded
    cache.fill(KEY, OLD, 60, cache.read(KEY)[1])
    assert cache.read(KEY)[0] == {b"body": b"old"}
    cache.drop(KEY)
    assert cache.read(KEY)[0] is None
