"""The round engine's quorums, ballot repair and chairman stand-ins, on a real SQLite store.

Quorums and stand-ins talk to the simulator over HTTP; ballot repair needs a reviewer whose first
ranking is unusable, so that test answers through ``httpx.MockTransport`` with the simulator's
own replies, changing only that one.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from shared import records
from shared.council.policy import RoundPolicy
from shared.council.prompts import RANKING_MARKER
from shared.council.run import Council, execute_round
from shared.provider.client import ProviderClient
from shared.roster import build_roster
from shared.simulator import answers
from shared.store.sqlite import SqliteStore
from tests.conftest import CHAIRMAN, MEMBERS

pytestmark = pytest.mark.integration

MEMBER_IDS = MEMBERS.split(",")
STAND_INS = ("sim/second", "sim/third")
ROSTER = build_roster(MEMBER_IDS, CHAIRMAN, chairman_fallbacks=STAND_INS)


@pytest.fixture
def store(tmp_path):
    store = SqliteStore(tmp_path / "council.sqlite3")
    yield store
    store.close()


def conduct(store, base_url: str, session: dict, transport=None, **policy) -> dict:
    """Store a session, run its first round to the end, and return the round as stored."""
    store.create_session(session)

    async def run() -> str:
        async with httpx.AsyncClient(transport=transport) as http:
            council = Council(store=store, provider=ProviderClient(http, base_url, None, 10.0),
                              roster=ROSTER, lease_s=30, max_attempts=3,
                              policy=RoundPolicy(**policy))
            return await execute_round(council, session["id"], 1)

    status = asyncio.run(run())
    round_ = store.get_session(session["id"])["rounds"][0]
    assert round_["status"] == status
    return round_


def new_session(question: str = "What is 2 + 2?", **quorum) -> dict:
    return records.new_session(question, MEMBER_IDS, CHAIRMAN, **quorum)


def test_a_session_may_ask_for_more_answers_before_they_are_ranked(store, settings, sim):
    sim.set_faults(model=MEMBER_IDS[0], error_rate=1.0)
    round_ = conduct(store, settings.provider_base_url, new_session(min_answers=4))
    assert round_["status"] == records.DEGRADED
    assert round_["ballots"] == []
    assert "rankings skipped: fewer than 4 members answered" in round_["notes"]
    assert all(s["mean_rank"] is None for s in round_["aggregate"])
    assert round_["synthesis"]["content"]


def test_too_few_valid_ballots_leave_the_answers_unranked(store, settings, sim):
    sim.set_faults(model=MEMBER_IDS[0], error_rate=1.0)
    round_ = conduct(store, settings.provider_base_url, new_session(), min_ballots=4)
    assert round_["status"] == records.DEGRADED
    assert len([b for b in round_["ballots"] if b["valid"]]) == 3
    assert "ranking not aggregated: 3 valid ballot(s), fewer than the 4 needed" in round_["notes"]
    assert all(s["mean_rank"] is None for s in round_["aggregate"])


def test_the_stand_ins_are_asked_in_order_and_the_first_that_answers_writes(
    store, settings, sim
):
    sim.set_faults(model=CHAIRMAN, error_rate=1.0)
    sim.set_faults(model=STAND_INS[0], error_rate=1.0)
    round_ = conduct(store, settings.provider_base_url, new_session(),
                     chairman_fallbacks=STAND_INS)
    assert round_["status"] == records.DEGRADED
    synthesis = round_["synthesis"]
    assert synthesis["model"] == STAND_INS[1]
    assert [f["model"] for f in synthesis["stand_in_for"]["failed"]] == [CHAIRMAN, STAND_INS[0]]
    assert "third wrote the final answer in place of the chairman chair" in round_["notes"][-1]
    assert [sim.stats()["calls"][m] for m in (CHAIRMAN, *STAND_INS)] == [1, 1, 1]


def test_when_every_chairman_fails_the_round_fails_naming_each(store, settings, sim):
    for model in (CHAIRMAN, *STAND_INS):
        sim.set_faults(model=model, error_rate=1.0)
    round_ = conduct(store, settings.provider_base_url, new_session(),
                     chairman_fallbacks=STAND_INS)
    assert round_["status"] == records.FAILED
    assert round_["error"].startswith("chairman chair failed: HTTP 500")
    assert "stand-in second failed" in round_["error"]
    assert "stand-in third failed" in round_["error"]


def test_no_call_outlives_the_round_deadline(store, settings, sim):
    sim.set_faults(model="*", latency_ms=3000)
    round_ = conduct(store, settings.provider_base_url, new_session(),
                     stage_deadline_s=60, round_deadline_s=0.5)
    assert round_["status"] == records.FAILED
    assert round_["error"] == "no council member answered"
    assert all("did not answer in time" in answer["error"] for answer in round_["answers"])
    assert sim.stats()["total"] == len(MEMBER_IDS), "nothing was asked after the deadline"


class SimulatedProvider:
    """Answer as the simulator would, but give one reviewer's rankings as prose at first."""

    def __init__(self, reviewer: str, bad_replies: int) -> None:
        self.reviewer = reviewer
        self.bad_replies = bad_replies
        self.rankings_asked = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        model, messages = body["model"], body["messages"]
        content = answers.compose(model, messages)
        if model == self.reviewer and "Response A" in content:
            self.rankings_asked += 1
            if self.rankings_asked <= self.bad_replies:
                content = "They are all fine; I would not like to rank them."
        return httpx.Response(200, json=answers.completion_body(model, messages, content))


@pytest.mark.parametrize("bad_replies, repaired", [(1, True), (2, False)])
def test_an_unusable_ballot_is_asked_for_once_more_before_it_is_set_aside(
    store, bad_replies, repaired
):
    reviewer = MEMBER_IDS[0]
    provider = SimulatedProvider(reviewer, bad_replies)
    round_ = conduct(store, "https://provider.test/v1", new_session(),
                     transport=httpx.MockTransport(provider))
    ballot = next(b for b in round_["ballots"] if b["reviewer"] == reviewer)
    assert provider.rankings_asked == 2, "one ranking request and exactly one correction"
    assert ballot["valid"] is repaired and ballot.get("repaired", False) is repaired
    assert ballot["usage"]["total_tokens"] > 0
    if repaired:
        assert round_["status"] == records.COMPLETED
        assert sorted(ballot["ranking"]) == sorted(MEMBER_IDS[1:])
    else:
        assert round_["status"] == records.DEGRADED
        assert ballot["error"] == "no ranking found; after a correction: no ranking found"
        assert f"ballot from alpha not counted: {ballot['error']}" in round_["notes"]


def test_the_correction_request_shows_the_first_reply_and_asks_for_json_only(store):
    requests: list[dict] = []
    provider = SimulatedProvider(MEMBER_IDS[0], 1)

    def recording(request: httpx.Request) -> httpx.Response:
        requests.append(json.loads(request.content))
        return provider(request)

    conduct(store, "https://provider.test/v1", new_session(),
            transport=httpx.MockTransport(recording))
    [first, correction] = [r["messages"] for r in requests
                           if r["model"] == MEMBER_IDS[0] and RANKING_MARKER in str(r)]
    assert correction[: len(first)] == first
    assert correction[len(first)]["content"].startswith("They are all fine")
    assert correction[-1]["content"].startswith("RANKING CORRECTION")
