"""Outbound rate limits per model, shared by every worker process through Redis.

Three rules decide when a call to a model may start, all from the roster and the provider:

- ``rpm``: at most that many calls start in any 60 s window (a sliding log of start times);
- ``max_concurrency``: at most that many calls are in flight (slots that expire on their own
  after ``hold_s``, so a killed worker cannot keep one);
- a 429 pauses every call to the model until its ``Retry-After`` has passed.

One Lua script checks all three and takes the slots in one round trip, atomically: a call never
spends a rate slot while it waits for a concurrency slot, and two processes never take the last
slot together. The ``limits`` package was considered: its moving window covers ``rpm`` alone, and
the concurrency slots and the shared pause would still need state and a script of our own, with
the three checks split over two round trips. While Redis cannot be reached (or with
``REDIS_ENABLED=false``) the same rules hold per process, in memory.

A model with neither ``rpm`` nor ``max_concurrency`` has only the pause to respect: its calls
read the pause from Redis at most once per ``PAUSE_CACHE_S`` per process (a ``PTTL``, not the
script), so a pause set by another process holds here at most that much later, and a 429 this
process saw holds here at once. That was one script per call, the largest Redis cost of a round.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

import redis
import redis.asyncio

from shared.provider.errors import NoCallSlot
from shared.roster import Model

log = logging.getLogger(__name__)

WINDOW_MS = 60_000
POLL_MS = 100  # a caller waiting for a concurrency slot asks again this often (slots free early)
DEFAULT_PAUSE_S = 1.0  # a 429 without Retry-After pauses the model this long
REDIS_RETRY_AFTER_S = 5.0
PAUSE_CACHE_S = 0.1  # an unlimited model re-reads the fleet's pause this often, per process
KEY_PREFIX = "llmc:pace"

# KEYS: start log, slots, pause. ARGV: token, rpm (0: none), max_concurrency (0: none), hold_ms,
# window_ms, poll_ms. Returns 0 when the call may start (its slots taken), else ms to wait.
ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local paused = redis.call('PTTL', KEYS[3])
if paused > 0 then return paused end
local rpm, most = tonumber(ARGV[2]), tonumber(ARGV[3])
local hold, window, poll = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
if most > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if redis.call('ZCARD', KEYS[2]) >= most then
    local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
    return math.max(1, math.min(poll, tonumber(first[2]) - now))
  end
end
if rpm > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
  if redis.call('ZCARD', KEYS[1]) >= rpm then
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    return math.max(1, tonumber(oldest[2]) + window - now)
  end
  redis.call('ZADD', KEYS[1], now, ARGV[1])
  redis.call('PEXPIRE', KEYS[1], window)
end
if most > 0 then
  redis.call('ZADD', KEYS[2], now + hold, ARGV[1])
  redis.call('PEXPIRE', KEYS[2], hold)
end
return 0
"""

# KEYS: pause. ARGV: ms. Pause the model for ms unless it is already paused for longer.
PAUSE = """
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return 0
"""


@dataclass(frozen=True)
class _Keys:
    starts: str
    slots: str
    pause: str


class FleetPace:
    """Hand out call slots per model under the fleet's shared rate limits."""

    def __init__(self, provider_key: str, client: redis.asyncio.Redis | None) -> None:
        self.provider_key = provider_key
        self._redis = client
        self._memory = _MemoryPace()
        self._down_until = 0.0
        self._pauses_seen: dict[str, tuple[float, float]] = {}  # model: (read at, paused until)
        self._pause_readings: dict[str, asyncio.Future[float]] = {}
        self._acquire = client.register_script(ACQUIRE) if client is not None else None
        self._pause = client.register_script(PAUSE) if client is not None else None

    def keys(self, model_id: str) -> _Keys:
        """Return the Redis keys of one model (one hash slot, so one script may use them all)."""
        tag = f"{KEY_PREFIX}:{{{self.provider_key}|{model_id}}}"
        return _Keys(f"{tag}:starts", f"{tag}:slots", f"{tag}:pause")

    @contextlib.asynccontextmanager
    async def slot(
        self, model: Model, deadline: float | None, hold_s: float
    ) -> AsyncIterator[None]:
        """Wait until the model's rules let one call start, and hold its concurrency slot.

        Raises ``NoCallSlot`` when they will not before ``deadline`` (``time.monotonic``).
        """
        if not (model.rpm or model.max_concurrency):
            while wait_ms := await self._pause_ms(model.id):
                await _wait(model.id, wait_ms, deadline)
            yield
            return
        token = uuid.uuid4().hex
        args = [token, model.rpm or 0, model.max_concurrency or 0, int(hold_s * 1000),
                WINDOW_MS, POLL_MS]
        keys = self.keys(model.id)
        keys_used = [keys.starts, keys.slots, keys.pause]
        while wait_ms := await self._ask(self._acquire, self._memory.acquire, model.id,
                                         keys_used, args):
            await _wait(model.id, wait_ms, deadline)
        try:
            yield
        finally:
            if model.max_concurrency:
                await asyncio.shield(self._give_back(model.id, token))

    async def pause(self, model_id: str, seconds: float | None) -> None:
        """Hold every call to a model, fleet-wide, for ``seconds`` (a 429's ``Retry-After``)."""
        ms = max(1, int((DEFAULT_PAUSE_S if seconds is None else seconds) * 1000))
        log.info("model paused after a 429", extra={"model": model_id, "pause_s": ms / 1000})
        self._memory.pause(model_id, ms)  # this process holds back at once, whatever Redis says
        await self._ask(self._pause, self._memory.pause, model_id, [self.keys(model_id).pause],
                        [ms])

    async def paused_for(self, model_id: str) -> float:
        """Return how many seconds calls to a model are still paused (0 when they are not)."""
        if self._redis is None or time.monotonic() < self._down_until:
            return self._memory.paused_for(model_id)
        return max(0, await self._redis.pttl(self.keys(model_id).pause)) / 1000

    async def _pause_ms(self, model_id: str) -> int:
        """Return how many ms calls to a model must still wait for a pause (0: not paused)."""
        left_s = max(await self._fleet_paused_until(model_id) - time.monotonic(),
                     self._memory.paused_for(model_id))
        return math.ceil(left_s * 1000) if left_s > 0 else 0

    async def _fleet_paused_until(self, model_id: str) -> float:
        """Return until when (``time.monotonic``) the fleet's last known pause of a model holds.

        A reading younger than ``PAUSE_CACHE_S`` is used as it is; calls that find it older wait
        for the one new reading in flight. While Redis is down the last reading stands.
        """
        read_at, until = self._pauses_seen.get(model_id, (float("-inf"), 0.0))
        now = time.monotonic()
        if now - read_at < PAUSE_CACHE_S or self._redis is None or now < self._down_until:
            return until
        reading = self._pause_readings.get(model_id)
        if reading is None:
            reading = self._pause_readings[model_id] = asyncio.ensure_future(
                self._read_pause(model_id, until))
            reading.add_done_callback(lambda _: self._pause_readings.pop(model_id, None))
        return await asyncio.shield(reading)  # one caller cancelled must not cancel the others

    async def _read_pause(self, model_id: str, until: float) -> float:
        now = time.monotonic()
        try:
            left_ms = await self._redis.pttl(self.keys(model_id).pause)
        except (redis.ConnectionError, redis.TimeoutError) as error:
            self._fall_back(error)
            return until
        until = now + max(0, left_ms) / 1000
        self._pauses_seen[model_id] = (now, until)
        return until

    async def _give_back(self, model_id: str, token: str) -> None:
        self._memory.release(model_id, token)
        if self._redis is not None and time.monotonic() >= self._down_until:
            with contextlib.suppress(redis.RedisError):
                await self._redis.zrem(self.keys(model_id).slots, token)

    async def _ask(self, script, fallback, model_id: str, keys: list[str], args: list) -> int:
        if script is not None and time.monotonic() >= self._down_until:
            try:
                return int(await script(keys=keys, args=args))
            except (redis.ConnectionError, redis.TimeoutError) as error:
                self._fall_back(error)
        return fallback(model_id, *args)

    def _fall_back(self, error: redis.RedisError) -> None:
        log.warning("rate limits fall back to this process while Redis is down",
                    extra={"error": str(error)})
        self._down_until = time.monotonic() + REDIS_RETRY_AFTER_S

    async def aclose(self) -> None:
        """Close the Redis connections."""
        if self._redis is not None:
            await self._redis.aclose()


async def _wait(model_id: str, wait_ms: int, deadline: float | None) -> None:
    """Sleep ``wait_ms`` (plus jitter), or raise ``NoCallSlot`` if that passes the deadline."""
    wait_s = wait_ms / 1000 * random.uniform(1.0, 1.1)  # waiters must not wake together
    if deadline is not None and time.monotonic() + wait_s >= deadline:
        raise NoCallSlot(f"no call slot for {model_id} before the deadline "
                         f"(shared rate limit; next in {wait_ms / 1000:.1f} s)")
    await asyncio.sleep(wait_s)


class _MemoryPace:
    """The same rules for this process alone: used without Redis, or while it is down."""

    def __init__(self) -> None:
        self._starts: dict[str, deque[float]] = {}
        self._slots: dict[str, dict[str, float]] = {}
        self._paused_until: dict[str, float] = {}

    def acquire(self, model_id: str, token: str, rpm: int, most: int, hold_ms: int,
                window_ms: int, poll_ms: int) -> int:
        now = time.monotonic() * 1000
        paused = self._paused_until.get(model_id, 0.0) - now
        if paused > 0:
            return int(paused) + 1
        slots = self._slots.setdefault(model_id, {})
        for holder, until in list(slots.items()):
            if until <= now:
                del slots[holder]
        if most and len(slots) >= most:
            return int(max(1, min(poll_ms, min(slots.values()) - now)))
        starts = self._starts.setdefault(model_id, deque())
        while starts and starts[0] <= now - window_ms:
            starts.popleft()
        if rpm and len(starts) >= rpm:
            return int(max(1, starts[0] + window_ms - now))
        if rpm:
            starts.append(now)
        if most:
            slots[token] = now + hold_ms
        return 0

    def release(self, model_id: str, token: str) -> None:
        self._slots.get(model_id, {}).pop(token, None)

    def pause(self, model_id: str, ms: int) -> int:
        until = time.monotonic() * 1000 + ms
        self._paused_until[model_id] = max(self._paused_until.get(model_id, 0.0), until)
        return 0

    def paused_for(self, model_id: str) -> float:
        return max(0.0, self._paused_until.get(model_id, 0.0) / 1000 - time.monotonic())
