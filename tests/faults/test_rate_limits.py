"""A 429 from the provider: its Retry-After holds every worker back, not only the refused call."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis.asyncio

from shared.provider.pace import FleetPace
from shared.provider.resilient import provider_key
from tests.conftest import MEMBERS
from tests.faults.checks import asked, assert_nothing_lost, submit, wait_until_finished
from tests.support.processes import wait_for

pytestmark = pytest.mark.faults

MEMBER_IDS = MEMBERS.split(",")
LIMITED = MEMBER_IDS[0]
RETRY_AFTER_S = 2


def paused_for(settings, model: str) -> float:
    """Return how long the fleet's calls to ``model`` are still held back (read from Redis)."""

    async def read() -> float:
        pace = FleetPace(provider_key(settings.provider_base_url),
                         redis.asyncio.Redis.from_url(settings.effective_redis_url))
        try:
            return await pace.paused_for(model)
        finally:
            await pace.aclose()

    return asyncio.run(read())


def test_a_429_holds_every_worker_back_until_its_retry_after(client, worker, sim, settings):
    sim.set_faults(model=LIMITED, rate_429=1.0, retry_after_s=RETRY_AFTER_S)
    worker("first")
    worker("second")
    first = submit(client, "Round 1: who gets rate limited?")
    [refused] = wait_for(lambda: asked(sim, "Round 1:", LIMITED), "the first 429")
    assert refused["outcome"] == "rate_limited"
    wait_for(lambda: paused_for(settings, LIMITED) > 0, "the fleet-wide pause")
    sim.http.delete("/_sim/faults", params={"model": LIMITED}).raise_for_status()
    others = [submit(client, f"Round {n}: who waits?") for n in (2, 3, 4)]

    sessions = wait_until_finished(client, [first, *others])
    assert [s["rounds"][0]["status"] for s in sessions] == ["completed"] * 4
    later = [r for r in sim.requests(model=LIMITED) if r["at"] > refused["at"]]
    assert len(later) == 2 * 4, "every round's answer (one of them a retry) and ballot"
    # No worker asked the member again before the Retry-After had passed: not the retry of the
    # refused call, and not the three rounds submitted meanwhile.
    assert min(r["at"] for r in later) - refused["at"] >= RETRY_AFTER_S
    retry = asked(sim, "Round 1:", LIMITED)[1]
    assert json.dumps(retry["messages"]) == json.dumps(refused["messages"])
    assert_nothing_lost(client, [first, *others], sim)
