"""Cancelling: a running round stops within one call, a queued one never calls a provider."""

from __future__ import annotations

import pytest

from tests.conftest import MEMBERS
from tests.faults.checks import asked, assert_nothing_lost, submit, wait_until_finished
from tests.support.processes import wait_for

pytestmark = pytest.mark.faults

MEMBER_IDS = MEMBERS.split(",")


def test_a_cancel_during_stage_one_ends_the_round_before_any_call_returns(client, worker, sim):
    sim.set_faults(model="*", latency_ms=4000)  # no answer can arrive before the cancel lands
    worker()
    question = "Can this be stopped in time?"
    location = submit(client, question)
    wait_for(lambda: len(asked(sim, question)) == len(MEMBER_IDS), "every member to be asked")

    assert client.post(f"{location}/cancel").status_code == 200
    round_ = wait_until_finished(client, [location])[0]["rounds"][0]
    assert round_["status"] == "cancelled"
    assert round_["answers"] == [], "the round ended before any call of 4 s could return"
    assert round_["ballots"] == [] and round_["synthesis"] is None
    assert len(asked(sim, question)) == len(MEMBER_IDS), "nothing was asked after the cancel"
    assert_nothing_lost(client, [location], sim)


def test_a_round_cancelled_while_queued_never_calls_a_provider(client, worker, sim):
    question = "Never mind this one."
    cancelled = submit(client, question)
    assert client.post(f"{cancelled}/cancel").get_json()["rounds"][0]["status"] == "cancelled"

    worker()
    later = submit(client, "A later question")  # queued behind the cancelled round's task
    wait_until_finished(client, [later])
    assert asked(sim, question) == []
    assert client.get(cancelled).get_json()["rounds"][0]["status"] == "cancelled"
    assert_nothing_lost(client, [cancelled, later], sim)
