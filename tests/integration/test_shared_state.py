"""Breakers and rate limits shared through a real Redis server, as two worker processes share them.

Each ``FleetBreakers`` or ``FleetPace`` here stands for one worker process: they share nothing
but the Redis server.
"""

from __future__ import annotations

import asyncio
import time

import pytest
import redis
import redis.asyncio

from shared.provider.breaker import STATE_CACHE_S, FleetBreakers
from shared.provider.errors import CircuitOpen, NoCallSlot, ProviderUnavailable
from shared.provider.pace import PAUSE_CACHE_S, FleetPace
from shared.roster import Model
from tests.support.processes import free_port, wait_for

pytestmark = pytest.mark.integration

MODEL = "test/model"


@pytest.fixture
def bytes_client(redis_server):
    redis_server.client().flushall()
    client = redis.Redis.from_url(redis_server.url, decode_responses=False)
    yield client
    client.close()


def fleet(client, fail_max: int = 2, reset_s: float = 1) -> FleetBreakers:
    return FleetBreakers(fail_max, reset_s, "provider.test", client)


def fail(breakers: FleetBreakers) -> None:
    breaker = breakers.for_model(MODEL)
    token = breaker.admit(5)
    try:
        with pytest.raises(ProviderUnavailable), breaker.calling():
            raise ProviderUnavailable("HTTP 500")
    finally:
        breaker.release(token)


def test_a_breaker_opened_by_one_process_is_open_for_another(bytes_client):
    # pybreaker keeps ``opened_at`` in whole seconds: a reset timeout of 1 s could pass at once.
    one, other = fleet(bytes_client, reset_s=5), fleet(bytes_client, reset_s=5)
    fail(one)
    fail(other)  # failures from both processes add up: the second one opens the breaker
    assert other.for_model(MODEL).state == "open"
    time.sleep(0.15)  # past the state cache of the process that did not open it
    assert one.for_model(MODEL).state == "open"
    with pytest.raises(CircuitOpen):
        one.for_model(MODEL).admit(5)


def test_after_the_reset_timeout_one_process_alone_gets_the_trial_call(bytes_client):
    one, other = fleet(bytes_client), fleet(bytes_client)
    fail(one)
    fail(one)
    wait_for(lambda: _admits(one), "the reset timeout to pass", timeout_s=5)
    # ``_admits`` took the trial lease and gave it back; take it for real now.
    trial = one.for_model(MODEL).admit(5)
    with pytest.raises(CircuitOpen, match="another call is trying"):
        other.for_model(MODEL).admit(5)
    with one.for_model(MODEL).calling():
        pass  # the trial succeeds
    one.for_model(MODEL).release(trial)
    time.sleep(0.15)
    assert other.for_model(MODEL).state == "closed"
    assert other.for_model(MODEL).admit(5) is None
    fail(other)  # the count started again when the trial closed the breaker
    assert other.for_model(MODEL).state == "closed"


def _admits(breakers: FleetBreakers) -> bool:
    try:
        token = breakers.for_model(MODEL).admit(5)
    except CircuitOpen:
        return False
    breakers.for_model(MODEL).release(token)
    return True


def test_with_redis_unreachable_the_breaker_admits_calls_at_once():
    client = redis.Redis(port=free_port(), socket_timeout=0.2, socket_connect_timeout=0.2)
    breakers = fleet(client)
    breaker = breakers.for_model(MODEL)
    for _ in range(5):
        breaker.release(breaker.admit(5))
        with breaker.calling():
            pass
    breakers.close()


def test_concurrency_slots_hold_across_processes_and_a_pause_reaches_them_all(redis_server):
    model = Model(id=MODEL, name="model", max_concurrency=2)
    in_flight, most = 0, 0

    async def call(pace: FleetPace) -> None:
        nonlocal in_flight, most
        async with pace.slot(model, time.monotonic() + 20, hold_s=10):
            in_flight += 1
            most = max(most, in_flight)
            await asyncio.sleep(0.05)
            in_flight -= 1

    async def run() -> tuple[float, type]:
        redis_server.client().flushall()
        paces = [FleetPace("provider.test", redis.asyncio.Redis.from_url(redis_server.url))
                 for _ in range(2)]
        await asyncio.gather(*(call(paces[n % 2]) for n in range(10)))
        await paces[0].pause(MODEL, 30)
        paused = await paces[1].paused_for(MODEL)
        try:
            async with paces[1].slot(model, time.monotonic() + 1, hold_s=10):
                refused = None
        except NoCallSlot as error:
            refused = type(error)
        for pace in paces:
            await pace.aclose()
        return paused, refused

    paused, refused = asyncio.run(run())
    assert most == 2
    assert 25 < paused <= 30 and refused is NoCallSlot


def test_a_pause_reaches_a_model_without_limits_within_the_pause_cache(redis_server):
    unlimited = Model(id=MODEL, name="model")

    async def starts_within(pace: FleetPace, seconds: float) -> bool:
        try:
            async with pace.slot(unlimited, time.monotonic() + seconds, hold_s=10):
                return True
        except NoCallSlot:
            return False

    async def run() -> tuple[bool, ...]:
        redis_server.client().flushall()
        paces = [FleetPace("provider.test", redis.asyncio.Redis.from_url(redis_server.url))
                 for _ in range(3)]
        before = await starts_within(paces[1], 1)  # reads "not paused" and keeps it a while
        await paces[0].pause(MODEL, 30)
        own = await starts_within(paces[0], 1)  # the process that saw the 429: at once
        # a process that had not read it yet, with calls at once while the first reading is out
        fresh = any(await asyncio.gather(*(starts_within(paces[2], 1) for _ in range(4))))
        await asyncio.sleep(PAUSE_CACHE_S + 0.05)
        later = await starts_within(paces[1], 1)  # the others, after one cache period
        for pace in paces:
            await pace.aclose()
        return before, own, fresh, later

    assert asyncio.run(run()) == (True, False, False, False)


def test_a_success_in_one_process_resets_the_failures_another_counted(bytes_client):
    one, other = fleet(bytes_client), fleet(bytes_client)
    other.for_model(MODEL).state  # noqa: B018 - read while the count is still zero
    fail(one)
    time.sleep(STATE_CACHE_S + 0.05)  # past the other process's reading of the count
    with other.for_model(MODEL).calling():
        pass
    fail(one)  # one failure in a row again: below fail_max
    assert one.for_model(MODEL).state == "closed"
