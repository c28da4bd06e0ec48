"""Malformed provider bodies: classified, retried a bounded number of times, never stored."""

from __future__ import annotations

import pytest

from tests.conftest import MEMBERS
from tests.faults.checks import asked, assert_nothing_lost, submit, wait_until_finished

pytestmark = pytest.mark.faults

MEMBER_IDS = MEMBERS.split(",")
ATTEMPTS = 3  # PROVIDER_MAX_ATTEMPTS in tests/faults/conftest.py
# Each member returns one kind of malformed body; the error names what was wrong with it.
KINDS = {
    MEMBER_IDS[0]: ("truncated", "truncated or non-JSON body"),
    MEMBER_IDS[1]: ("html", "HTML page instead of JSON"),
    MEMBER_IDS[2]: ("no_choices", "without any choices"),
    MEMBER_IDS[3]: ("error_200", "error in an HTTP 200 body"),
}


def test_each_malformed_body_is_classified_retried_and_never_stored(client, worker, sim):
    for member, (kind, _) in KINDS.items():
        sim.set_faults(model=member, malformed=kind)
    worker()
    question = "Which malformed bodies are caught?"
    location = submit(client, question)

    round_ = wait_until_finished(client, [location])[0]["rounds"][0]
    assert round_["status"] == "failed" and round_["error"] == "no council member answered"
    answers = {answer["member"]: answer for answer in round_["answers"]}
    for member, (kind, reason) in KINDS.items():
        assert answers[member]["content"] is None, kind
        assert reason in answers[member]["error"], (kind, answers[member]["error"])
        calls = asked(sim, question, model=member)
        assert len(calls) == ATTEMPTS, f"{kind}: retried, but only {ATTEMPTS} times in all"
        assert {call["outcome"] for call in calls} == {"malformed"}
    assert_nothing_lost(client, [location], sim)
