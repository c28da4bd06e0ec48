"""A worker killed with SIGKILL mid-round: the round still completes, and no paid call repeats."""

from __future__ import annotations

import pytest

from tests.conftest import CHAIRMAN, MEMBERS
from tests.integration.test_round_trip import poll_until_terminal
from tests.support.processes import wait_for

pytestmark = pytest.mark.integration

MEMBER_IDS = MEMBERS.split(",")
SLOW = MEMBER_IDS[-1]


def test_a_round_survives_a_killed_worker_without_repeating_checkpointed_calls(
    client, worker, beat, sim
):
    sim.set_faults(model=SLOW, latency_ms=4000)
    doomed = worker("doomed")
    created = client.post("/v1/sessions", json={"question": "Will this survive a crash?"})
    location = created.headers["Location"]

    def three_answers_checkpointed():
        answers = client.get(location).get_json()["rounds"][0]["answers"]
        return len(answers) == len(MEMBER_IDS) - 1

    wait_for(three_answers_checkpointed, "the fast members' answers to be checkpointed")
    assert sim.stats()["calls"].get(SLOW) == 1  # the slow call is in flight
    doomed.kill()

    sim.set_faults(model=SLOW, latency_ms=20)
    worker("survivor")
    session = poll_until_terminal(client, location)

    round_ = session["rounds"][0]
    assert round_["status"] == "completed", round_
    assert round_["attempts"] == 2
    calls = sim.stats()["calls"]
    for member in MEMBER_IDS[:-1]:
        assert calls[member] == 2, f"{member}: one answer and one ballot, never repeated"
    assert calls[SLOW] == 3, "the in-flight answer is the only call made twice"
    assert calls[CHAIRMAN] == 1
