"""A read cache in Redis that degrades to per-process memory when Redis is unreachable.

Entries are small hashes of byte strings (a rendered body and what is needed to serve it).
Every write that can change a cached session, from the API or a worker, deletes that session's
entry (see ``shared.store.cached``), so a cached read is never older than the last write. When
Redis cannot be reached the cache keeps entries in this process only, for at most
``FALLBACK_TTL_S``: another process's write cannot reach that memory, so the fallback trades a
few seconds of staleness for availability.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping

import redis

from shared.metrics import CACHE_OPERATIONS

log = logging.getLogger(__name__)

FALLBACK_TTL_S = 2.0
FALLBACK_ENTRIES = 2048
RETRY_REDIS_AFTER_S = 5.0
VERSION_TTL_S = 7 * 24 * 3600

# KEYS: entry, version. ARGV: token, ttl, field, value, field, value, ...
FILL_IF_UNCHANGED = """
local version = redis.call('GET', KEYS[2]) or ''
if version ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""


class Cache:
    """Read, fill and drop cached entries by key, without ever caching a superseded value.

    A reader that misses gets a token (the key's write version); it may fill the entry only if
    no write dropped the key since, checked atomically in Redis. This closes the race in which a
    slow reader would cache what a worker had just overwritten.
    """

    def __init__(self, client: redis.Redis | None, prefix: str = "llmc:cache:") -> None:
        self._redis = client
        self._prefix = prefix
        self._memory = _MemoryCache(FALLBACK_ENTRIES)
        self._redis_down_until = 0.0
        self._fill_script = client.register_script(FILL_IF_UNCHANGED) if client else None
        self._drops = _DropGroups()

    def read(self, key: str) -> tuple[dict[bytes, bytes] | None, bytes]:
        """Return the entry stored under ``key`` (or ``None``) and a token for a later fill."""

        def ask(client: redis.Redis):
            with client.pipeline(transaction=False) as pipe:
                pipe.hgetall(self._entry(key))
                pipe.get(self._version(key))
                entry, version = pipe.execute()
            return entry, version or b""

        found = self._ask_redis("get", ask)
        if found is _UNREACHABLE:
            found = self._memory.get(key), b""
        CACHE_OPERATIONS.labels(operation="get", result="hit" if found[0] else "miss").inc()
        return found[0] or None, found[1]

    def fill(self, key: str, entry: Mapping[str, bytes | str], ttl_s: float, token: bytes) -> None:
        """Store an entry for ``ttl_s`` seconds unless the key was written since ``token``."""
        fields = [part for pair in _as_bytes(entry).items() for part in pair]

        def write(client: redis.Redis) -> int:
            keys = [self._entry(key), self._version(key)]
            return self._fill_script(keys=keys, args=[token, max(1, int(ttl_s)), *fields],
                                     client=client)

        stored = self._ask_redis("set", write)
        if stored is _UNREACHABLE:
            self._memory.put(key, _as_bytes(entry), min(ttl_s, FALLBACK_TTL_S))
        CACHE_OPERATIONS.labels(operation="set", result="ok" if stored else "stale").inc()

    def drop(self, *keys: str) -> None:
        """Forget entries and change their write versions (every write calls this).

        Returns once Redis has done it. Drops asked for by other threads while one is on its way
        go together in the next round trip (``_DropGroups``).
        """
        for key in keys:
            self._memory.drop(key)
        if keys:
            self._drops.run(keys, self._bump)
        CACHE_OPERATIONS.labels(operation="delete", result="ok").inc()

    def _bump(self, keys: list[str]) -> None:
        """Change the keys' versions, then delete their entries: one round trip, no transaction.

        The version changes before the entry goes, so a fill that checks the version in between
        is refused, and a fill that ran before is deleted with the entry.
        """

        def bump(client: redis.Redis) -> None:
            with client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.set(self._version(key), _new_version(), ex=VERSION_TTL_S)
                pipe.delete(*(self._entry(key) for key in keys))
                pipe.execute()

        self._ask_redis("delete", bump)

    @property
    def degraded(self) -> bool:
        """Return whether the cache is running on per-process memory."""
        return self._redis is None or time.monotonic() < self._redis_down_until

    def _entry(self, key: str) -> str:
        return f"{self._prefix}{key}"

    def _version(self, key: str) -> str:
        return f"{self._prefix}{key}:v"

    def _ask_redis(self, operation: str, call):
        if self.degraded:
            return _UNREACHABLE
        try:
            return call(self._redis)
        except redis.RedisError as error:
            self._redis_down_until = time.monotonic() + RETRY_REDIS_AFTER_S
            log.warning("cache falls back to process memory",
                        extra={"operation": operation, "error": str(error)})
            return _UNREACHABLE


_UNREACHABLE = object()


def _new_version() -> int:
    # Random rather than counted: one SET with its expiry instead of INCR and EXPIRE. An
    # integer, so that a process still counting (INCR) during a rolling upgrade can go on.
    return random.getrandbits(62)


def _as_bytes(entry: Mapping[str, bytes | str]) -> dict[bytes, bytes]:
    return {
        k.encode(): v if isinstance(v, bytes) else str(v).encode() for k, v in entry.items()
    }


class _DropGroups:
    """Send drops that are asked for at the same time to Redis together, like a group commit.

    Every write drops a key from a store thread and waits for Redis, and with dozens of rounds
    in flight dozens of threads did so at once, each paying a round trip. Here the first thread
    to ask sends its keys at once; threads that ask while a send is on its way join one group,
    whose first member sends the whole group as soon as the send before it is back. Each caller
    returns once its own keys were sent.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._sending = False
        self._open: _DropGroup | None = None

    def run(self, keys: tuple[str, ...], send) -> None:
        """Have ``send`` called with ``keys`` (and others'); return when it has been."""
        with self._lock:
            group = self._open
            if group is None:
                group = self._open = _DropGroup()
            group.keys += keys
            leader = not group.led
            group.led = True
            if leader:
                while self._sending:
                    self._idle.wait()
                self._sending = True
                self._open = None  # later callers start the next group
        if not leader:
            group.sent.wait()
            if group.error is not None:
                raise group.error
            return
        try:
            send(group.keys)
        except BaseException as error:
            group.error = error
            raise
        finally:
            with self._lock:
                self._sending = False
                self._idle.notify()
            group.sent.set()


class _DropGroup:
    def __init__(self) -> None:
        self.keys: list[str] = []
        self.led = False  # the first thread to join sends the group
        self.sent = threading.Event()
        self.error: BaseException | None = None


class _MemoryCache:
    """A small LRU of entries with expiry times, safe across threads."""

    def __init__(self, capacity: int) -> None:
        self._entries: OrderedDict[str, tuple[float, dict]] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def get(self, key: str) -> dict | None:
        with self._lock:
            found = self._entries.get(key)
            if found is None or found[0] < time.monotonic():
                self._entries.pop(key, None)
                return None
            self._entries.move_to_end(key)
            return found[1]

    def put(self, key: str, entry: dict, ttl_s: float) -> None:
        with self._lock:
            self._entries[key] = (time.monotonic() + ttl_s, entry)
            self._entries.move_to_end(key)
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)

    def drop(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)
