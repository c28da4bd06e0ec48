"""A council round end to end: Flask → Redis → a real Celery worker → the simulator → the store."""

from __future__ import annotations

import pytest

from tests.conftest import CHAIRMAN, MEMBERS
from tests.support.processes import wait_for

pytestmark = pytest.mark.integration

MEMBER_IDS = MEMBERS.split(",")
TERMINAL = {"completed", "degraded", "failed", "cancelled"}


def poll_until_terminal(client, location: str, timeout_s: float = 60) -> dict:
    def finished():
        body = client.get(location).get_json()
        return body if body["rounds"][-1]["status"] in TERMINAL else None

    return wait_for(finished, f"{location} to finish", timeout_s)


def test_a_submitted_question_reaches_completed_with_every_stage(client, worker, sim):
    worker()
    response = client.post("/v1/sessions", json={"question": "Why is the sky blue?"})
    assert response.status_code == 202
    assert response.headers["Location"] == f"/v1/sessions/{response.get_json()['id']}"
    assert int(response.headers["Retry-After"]) > 0

    session = poll_until_terminal(client, response.headers["Location"])
    round_ = session["rounds"][0]
    assert round_["status"] == "completed", round_
    assert sorted(a["member"] for a in round_["answers"]) == sorted(MEMBER_IDS)
    assert all(a["content"] and a["error"] is None for a in round_["answers"])
    assert sorted(b["reviewer"] for b in round_["ballots"]) == sorted(MEMBER_IDS)
    for ballot in round_["ballots"]:
        others = sorted(set(MEMBER_IDS) - {ballot["reviewer"]})
        assert ballot["valid"] and sorted(ballot["ranking"]) == others
        assert sorted(ballot["labels"].values()) == others
    assert sorted(s["member"] for s in round_["aggregate"]) == sorted(MEMBER_IDS)
    assert all(s["ballots"] == len(MEMBER_IDS) - 1 for s in round_["aggregate"])
    assert round_["synthesis"]["model"] == CHAIRMAN and round_["synthesis"]["content"]
    assert round_["usage"]["total_tokens"] > 0
    assert sim.stats()["total"] == 2 * len(MEMBER_IDS) + 1


def test_a_follow_up_round_carries_the_earlier_round_as_context(client, worker, sim):
    worker()
    created = client.post("/v1/sessions", json={"question": "Name a prime number."})
    first = poll_until_terminal(client, created.headers["Location"])["rounds"][0]

    follow_up = client.post(f"/v1/sessions/{first_id(created)}/rounds",
                            json={"question": "Is it also odd?"})
    assert follow_up.status_code == 202
    session = poll_until_terminal(client, follow_up.headers["Location"])
    assert [r["status"] for r in session["rounds"]] == ["completed", "completed"]

    asked = [r["messages"] for r in sim.requests(model=MEMBER_IDS[0])]
    follow_up_answers = [m for m in asked if m[-1]["content"] == "Is it also odd?"]
    assert len(follow_up_answers) == 1, "the member answers the follow-up exactly once"
    context = [message["content"] for message in follow_up_answers[0][:-1]]
    assert "Name a prime number." in context
    assert first["synthesis"]["content"] in context


def test_a_follow_up_is_refused_while_the_last_round_runs(client, sim):
    created = client.post("/v1/sessions", json={"question": "Still queued?"})
    response = client.post(f"/v1/sessions/{first_id(created)}/rounds",
                           json={"question": "Too soon"})
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "round_unfinished"


def test_cancelling_a_queued_round_means_no_provider_is_called(client, worker, sim):
    created = client.post("/v1/sessions", json={"question": "Never mind."})
    cancelled = client.post(f"/v1/sessions/{first_id(created)}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.get_json()["rounds"][0]["status"] == "cancelled"
    worker()
    again = client.post(f"/v1/sessions/{first_id(created)}/cancel")
    assert again.get_json()["rounds"][0]["status"] == "cancelled"
    second = client.post("/v1/sessions", json={"question": "A later question"})
    poll_until_terminal(client, second.headers["Location"])
    assert sim.stats()["total"] == 2 * len(MEMBER_IDS) + 1


def test_sessions_are_listed_newest_first_in_pages(client):
    ids = [first_id(client.post("/v1/sessions", json={"question": f"q{i}"})) for i in range(5)]
    seen, cursor = [], None
    while True:
        query = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/sessions", query_string=query).get_json()
        seen += [s["id"] for s in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))


def first_id(response) -> str:
    return response.get_json()["id"]
