"""More callers than pooled Redis connections wait their turn instead of failing."""

from __future__ import annotations

import threading

import pytest

from shared.redis_client import connect_redis

pytestmark = pytest.mark.integration


def test_callers_beyond_the_pool_wait_for_a_connection(settings):
    client = connect_redis(settings, max_connections=2)
    errors: list[Exception] = []

    def hold_a_connection() -> None:
        try:
            client.blpop(["llmc:test:nothing"], timeout=0.2)  # holds its connection 0.2 s
        except Exception as error:  # noqa: BLE001 - the test reports whatever went wrong
            errors.append(error)

    callers = [threading.Thread(target=hold_a_connection) for _ in range(6)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert errors == []
    assert client.connection_pool.max_connections == 2
