"""Chat mode: members speak in turn, each seeing the turns before it; the chairman joins."""

from __future__ import annotations

import pytest

from tests.conftest import CHAIRMAN, MEMBERS
from tests.integration.test_round_trip import poll_until_terminal

pytestmark = pytest.mark.integration

MEMBER_IDS = MEMBERS.split(",")


def test_a_chat_round_lets_everyone_speak_in_turn(client, worker, sim):
    worker()
    created = client.post("/v1/sessions", json={"question": "Tea or coffee?", "mode": "chat"})
    assert created.status_code == 202 and created.get_json()["mode"] == "chat"
    session = poll_until_terminal(client, created.headers["Location"])
    round_ = session["rounds"][0]
    assert round_["status"] == "completed", round_
    speakers = [a["member"] for a in round_["answers"]]
    assert speakers == [*MEMBER_IDS, CHAIRMAN]
    assert round_["ballots"] == [] and round_["synthesis"] is None
    assert sim.stats()["total"] == len(MEMBER_IDS) + 1

    last_turn = sim.requests(model=CHAIRMAN)[-1]["messages"]
    assert last_turn[-1]["content"].startswith("Tea or coffee?")
    for answer in round_["answers"][:-1]:
        assert answer["content"] in last_turn[-1]["content"]
    first_turn = sim.requests(model=MEMBER_IDS[0])[-1]["messages"]
    assert "You speak first" in first_turn[-1]["content"]


def test_a_chat_follow_up_sees_the_earlier_discussion(client, worker, sim):
    worker()
    created = client.post("/v1/sessions", json={"question": "Cats or dogs?", "mode": "chat"})
    first = poll_until_terminal(client, created.headers["Location"])["rounds"][0]
    session_id = created.get_json()["id"]
    follow = client.post(f"/v1/sessions/{session_id}/rounds", json={"question": "Why?"})
    session = poll_until_terminal(client, follow.headers["Location"])
    assert session["rounds"][1]["status"] == "completed"
    context = [m["content"] for m in sim.requests(model=MEMBER_IDS[0])[-1]["messages"][:-1]]
    assert "Cats or dogs?" in context
    assert any(first["answers"][0]["content"] in text for text in context)


def test_an_unknown_mode_is_refused(client):
    response = client.post("/v1/sessions", json={"question": "?", "mode": "debate"})
    assert response.status_code == 400
