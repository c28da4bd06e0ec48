"""Five SIGKILLs of a worker process during one batch of 20 rounds: every round completes."""

from __future__ import annotations

import pytest

from tests.faults.checks import assert_nothing_lost, submit, wait_until_finished
from tests.support.processes import wait_for

pytestmark = pytest.mark.faults

ROUNDS = 20
KILLS = 5


@pytest.fixture
def environ(environ):
    # One round at a time per worker keeps the batch going across five kills and restarts; a
    # round may be caught by several kills, so it may be claimed more than three times.
    return {**environ, "WORKER_CONCURRENCY": "1", "ROUND_MAX_ATTEMPTS": str(KILLS + 3)}


def test_rounds_survive_five_worker_kills_and_repeat_only_calls_in_flight(
    client, worker, beat, sim
):
    sim.set_faults(model="*", latency_ms=1000)
    worker("steady")
    doomed = worker("doomed-0")
    locations = [submit(client, f"Round {n}: will it survive?") for n in range(ROUNDS)]

    in_flight_at_kills = []
    for kill in range(1, KILLS + 1):
        wait_for(lambda doomed=doomed: _running(doomed) and sim.stats()["in_flight"] > 0,
                 "the doomed worker to be in the middle of a stage")
        in_flight_at_kills.append(sim.stats()["in_flight"])
        doomed.kill()
        doomed = worker(f"doomed-{kill}")

    sessions = wait_until_finished(client, locations, timeout_s=180)
    assert [s["rounds"][0]["status"] for s in sessions] == ["completed"] * ROUNDS
    assert max(s["rounds"][0]["attempts"] for s in sessions) >= 2, "the kills hit rounds"
    assert_nothing_lost(client, locations, sim, repeats_allowed=sum(in_flight_at_kills))


def _running(worker) -> bool:
    """Tell whether a worker holds a round that it has not finished yet."""
    claimed = sum('"round claimed"' in line for line in worker.lines)
    finished = sum('"round finished"' in line for line in worker.lines)
    return claimed > finished
