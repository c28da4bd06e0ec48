"""A member that always fails: its breaker opens fleet-wide, then lets one trial call through."""

from __future__ import annotations

import time

import pytest

from tests.conftest import MEMBERS
from tests.faults.checks import asked, assert_nothing_lost, submit, wait_until_finished

pytestmark = pytest.mark.faults

FAILING = MEMBERS.split(",")[0]
FAIL_MAX = 3
RESET_S = 20  # long enough to start and stop workers while it is open, even on a busy machine


@pytest.fixture
def environ(environ):
    # Two attempts per call, three failures to open: the breaker opens during the second round.
    return {**environ, "PROVIDER_MAX_ATTEMPTS": "2", "CIRCUIT_BREAKER_FAIL_MAX": str(FAIL_MAX),
            "CIRCUIT_BREAKER_TIMEOUT": str(RESET_S)}


def calls_to_failing(sim) -> int:
    return sim.stats()["calls"].get(FAILING, 0)


def failing_note(session: dict) -> str:
    round_ = session["rounds"][0]
    assert round_["status"] == "degraded", round_
    return next(note for note in round_["notes"] if note.startswith("alpha did not answer"))


def test_an_open_breaker_is_shared_by_the_fleet_and_lets_one_trial_through(client, worker, sim):
    sim.set_faults(model=FAILING, error_rate=1.0)
    first = worker("first")
    opening = [submit(client, "Round one: will alpha answer?")]
    wait_until_finished(client, opening)
    assert calls_to_failing(sim) == 2, "two attempts, both failed: the breaker is still closed"
    opening.append(submit(client, "Round two: will alpha answer now?"))
    [_, opened] = wait_until_finished(client, opening)
    opened_by = time.monotonic()
    assert calls_to_failing(sim) == FAIL_MAX, "the third failure opened it: no retry followed"
    assert "circuit breaker of sim/alpha is open" in failing_note(opened)
    assert any("circuit breaker open" in line for line in first.lines), "the change is logged"

    worker("second")
    first.stop()  # from here on, only a process that never called alpha runs rounds
    skipping = [submit(client, f"Round {n}: is alpha still out?") for n in (3, 4)]
    for session in wait_until_finished(client, skipping):
        assert failing_note(session) == "alpha did not answer: skipped: the circuit breaker " \
                                        "of sim/alpha is open"
    assert calls_to_failing(sim) == FAIL_MAX, "the second process made no call while open"

    worker("third")
    time.sleep(max(0.0, opened_by + RESET_S + 1.5 - time.monotonic()))  # past the reset timeout
    trial = [submit(client, f"Round {n}: one trial for alpha?") for n in (5, 6, 7, 8)]
    for session in wait_until_finished(client, trial):
        failing_note(session)
    assert calls_to_failing(sim) == FAIL_MAX + 1, "exactly one trial call across the fleet"
    assert sum(len(asked(sim, f"Round {n}:", FAILING)) for n in (5, 6, 7, 8)) == 1
    assert_nothing_lost(client, [*opening, *skipping, *trial], sim)
