"""A model's rpm and concurrency quotas hold across two worker processes."""

from __future__ import annotations

import json

import pytest

from tests.conftest import MEMBERS
from tests.faults.checks import asked, assert_nothing_lost, submit, wait_until_finished

pytestmark = pytest.mark.faults

MEMBER_IDS = MEMBERS.split(",")
LIMITED, SERIAL = MEMBER_IDS[0], MEMBER_IDS[1]
RPM = 5
ROUNDS = 6
SERIAL_LATENCY_MS = 300


@pytest.fixture
def environ(environ):
    options = {LIMITED: {"rpm": RPM}, SERIAL: {"max_concurrency": 1}}
    return {**environ, "COUNCIL_MODEL_OPTIONS": json.dumps(options),
            "STAGE_DEADLINE_SECONDS": "8"}


def test_rpm_and_concurrency_quotas_hold_across_the_fleet(client, worker, sim):
    sim.set_faults(model=SERIAL, latency_ms=SERIAL_LATENCY_MS)
    worker("first")
    worker("second")
    locations = [submit(client, f"Round {n}: how many calls fit?") for n in range(ROUNDS)]
    sessions = wait_until_finished(client, locations)

    # rpm: the test runs for less than a minute, so the whole run is one window.
    assert sim.stats()["calls"][LIMITED] == RPM, "every slot of the minute used, none more"
    refused = [a for s in sessions for a in s["rounds"][0]["answers"]
               if a["member"] == LIMITED and a["content"] is None]
    assert len(refused) == ROUNDS - RPM
    assert all("no call slot for sim/alpha before the deadline" in a["error"] for a in refused)
    # max_concurrency 1: each call to the serial member starts after the previous one ended.
    starts = sorted(r["at"] for r in sim.requests(model=SERIAL))
    assert len(starts) >= 2 * ROUNDS - 1
    gaps = [later - earlier for earlier, later in zip(starts, starts[1:], strict=False)]
    assert min(gaps) >= SERIAL_LATENCY_MS / 1000, gaps
    assert all(asked(sim, f"Round {n}:", SERIAL) for n in range(ROUNDS))
    assert_nothing_lost(client, locations, sim)
