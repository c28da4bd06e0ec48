"""A chairman that keeps failing: the stand-in writes the final answer, and the result says so."""

from __future__ import annotations

import pytest

from tests.conftest import CHAIRMAN
from tests.faults.checks import assert_nothing_lost, submit, wait_until_finished

pytestmark = pytest.mark.faults

STAND_IN = "sim/stand-in"
ATTEMPTS = 3  # PROVIDER_MAX_ATTEMPTS in tests/faults/conftest.py


@pytest.fixture
def environ(environ):
    return {**environ, "COUNCIL_CHAIRMAN_FALLBACKS": STAND_IN}


def test_the_stand_in_chairman_writes_the_answer_and_the_round_says_who(client, worker, sim):
    sim.set_faults(model=CHAIRMAN, error_rate=1.0)
    worker()
    location = submit(client, "Who writes the final answer today?")

    round_ = wait_until_finished(client, [location])[0]["rounds"][0]
    assert round_["status"] == "degraded", "a stand-in's answer is not the full council's"
    synthesis = round_["synthesis"]
    assert synthesis["model"] == STAND_IN and synthesis["name"] == "stand-in"
    assert synthesis["content"] and "[simulated sim/stand-in]" in synthesis["content"]
    assert synthesis["stand_in_for"]["chairman"] == CHAIRMAN
    assert "HTTP 500" in synthesis["stand_in_for"]["error"]
    assert any("stand-in wrote the final answer in place of the chairman chair" in note
               for note in round_["notes"]), round_["notes"]
    calls = sim.stats()["calls"]
    assert calls[CHAIRMAN] == ATTEMPTS and calls[STAND_IN] == 1
    assert_nothing_lost(client, [location], sim)
