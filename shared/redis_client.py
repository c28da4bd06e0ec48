"""One way to open a Redis client for shared state (cache, breakers, limits, events)."""

from __future__ import annotations

import redis

from shared.settings import Settings

HEALTH_CHECK_INTERVAL_S = 15


def connect_redis(
    settings: Settings, *, decode_responses: bool = False, read_timeout_s: float | None = None,
    max_connections: int | None = None,
) -> redis.Redis:
    """Return a pooled client; its timeouts keep an unreachable Redis from hanging a caller.

    ``read_timeout_s`` replaces the reply timeout for clients that make blocking reads (XREAD
    BLOCK), which must wait longer than they block; each blocked read holds one connection, so
    such clients also size their pool (``max_connections``, else redis-py's default of 100).
    """
    timeout = settings.redis_socket_timeout_s
    return redis.Redis.from_url(
        settings.effective_redis_url,
        socket_timeout=read_timeout_s or timeout,
        socket_connect_timeout=timeout,
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
        decode_responses=decode_responses,
        **({"max_connections": max_connections} if max_connections else {}),
    )
