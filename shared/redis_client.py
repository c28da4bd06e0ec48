"""One way to open a Redis client for shared state (cache, breakers, limits, events)."""

from __future__ import annotations

import redis

from shared.settings import Settings

HEALTH_CHECK_INTERVAL_S = 15
POOL_SIZE = 100


def connect_redis(
    settings: Settings, *, decode_responses: bool = False, read_timeout_s: float | None = None,
    max_connections: int | None = None,
) -> redis.Redis:
    """Return a pooled client; its timeouts keep an unreachable Redis from hanging a caller.

    The pool holds at most ``max_connections`` (else ``POOL_SIZE``) connections, and a caller
    that finds them all busy waits for one, at most a socket timeout: redis-py's default pool
    refuses at once past 100 (``MaxConnectionsError``), which an API process with 256 threads
    reached under a burst of submissions and answered with 503s. ``read_timeout_s`` replaces the
    reply timeout for clients that make blocking reads (XREAD BLOCK), which must wait longer than
    they block; each blocked read holds one connection, so such clients size their pool.
    """
    timeout = settings.redis_socket_timeout_s
    pool = redis.BlockingConnectionPool.from_url(
        settings.effective_redis_url,
        max_connections=max_connections or POOL_SIZE,
        timeout=timeout,
        socket_timeout=read_timeout_s or timeout,
        socket_connect_timeout=timeout,
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
        decode_responses=decode_responses,
    )
    return redis.Redis(connection_pool=pool)
