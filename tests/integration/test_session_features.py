"""Session features: edit, delete, branch, share, export, usage and cost."""

from __future__ import annotations

import json

import pytest

from tests.conftest import CHAIRMAN, MEMBERS
from tests.integration.test_round_trip import poll_until_terminal

pytestmark = pytest.mark.integration

MEMBER_IDS = MEMBERS.split(",")


@pytest.fixture
def finished(client, worker):
    """A session whose first round completed."""
    worker()
    created = client.post("/v1/sessions", json={"question": "What is *bold* <b>here</b>?"})
    return poll_until_terminal(client, created.headers["Location"])


def test_title_and_pin_can_be_changed_and_bad_edits_are_refused(client):
    session_id = client.post("/v1/sessions", json={"question": "Edit me"}).get_json()["id"]
    patched = client.patch(f"/v1/sessions/{session_id}", json={"title": "Renamed", "pinned": True})
    assert patched.status_code == 200
    assert (patched.get_json()["title"], patched.get_json()["pinned"]) == ("Renamed", True)
    assert client.get(f"/v1/sessions/{session_id}").get_json()["title"] == "Renamed"
    for bad in ({}, {"title": ""}, {"title": "x" * 81}, {"title": "a\x00b"}, {"pinned": "yes"},
                {"owner": "me"}):
        response = client.patch(f"/v1/sessions/{session_id}", json=bad)
        assert response.status_code == 400, bad
        assert response.get_json()["error"]["code"] == "invalid_request"


def test_a_deleted_session_is_gone_from_reads_and_lists(client):
    keep = client.post("/v1/sessions", json={"question": "Keep me"}).get_json()["id"]
    drop = client.post("/v1/sessions", json={"question": "Drop me"}).get_json()["id"]
    client.get(f"/v1/sessions/{drop}")  # cached now: the delete must drop it
    assert client.delete(f"/v1/sessions/{drop}").status_code == 204
    assert client.get(f"/v1/sessions/{drop}").status_code == 404
    assert client.delete(f"/v1/sessions/{drop}").status_code == 404
    assert [s["id"] for s in client.get("/v1/sessions").get_json()["data"]] == [keep]


def test_delete_all_needs_the_confirmation(client):
    for question in ("one", "two"):
        client.post("/v1/sessions", json={"question": question})
    refused = client.delete("/v1/sessions", json={"confirm": "yes"})
    assert refused.status_code == 400
    assert len(client.get("/v1/sessions").get_json()["data"]) == 2
    done = client.delete("/v1/sessions", json={"confirm": "delete all my sessions"})
    assert done.get_json() == {"deleted": 2}
    assert client.get("/v1/sessions").get_json()["data"] == []


def test_a_branch_copies_the_rounds_and_runs_the_new_question(client, finished):
    branched = client.post(f"/v1/sessions/{finished['id']}/branch",
                           json={"round_no": 1, "question": "And then?"})
    assert branched.status_code == 202
    session = poll_until_terminal(client, branched.headers["Location"])
    assert session["id"] != finished["id"]
    assert session["branched_from"] == {"session_id": finished["id"], "round_no": 1}
    assert [r["status"] for r in session["rounds"]] == ["completed", "completed"]
    assert session["rounds"][0]["synthesis"] == finished["rounds"][0]["synthesis"]
    original = client.get(f"/v1/sessions/{finished['id']}").get_json()
    assert len(original["rounds"]) == 1


def test_a_branch_without_a_question_is_created_as_it_is(client, finished):
    branched = client.post(f"/v1/sessions/{finished['id']}/branch", json={"round_no": 1})
    assert branched.status_code == 201
    assert branched.get_json()["status"] == "completed"
    assert client.post(f"/v1/sessions/{finished['id']}/branch",
                       json={"round_no": 2}).status_code == 400


def test_share_gives_a_public_read_only_view_that_revokes_at_once(client, finished):
    shared = client.post(f"/v1/sessions/{finished['id']}/share").get_json()
    assert client.post(f"/v1/sessions/{finished['id']}/share").get_json() == shared
    public = client.get(shared["url"])
    assert public.status_code == 200
    body = public.get_json()
    assert body["id"] == finished["id"]
    assert not {"owner", "callback_url", "deliveries"} & set(body)
    assert client.delete(f"/v1/sessions/{finished['id']}/share").status_code == 204
    assert client.get(shared["url"]).status_code == 404


def test_the_markdown_export_shows_the_stored_ranking_and_escapes_user_text(client, finished):
    response = client.get(f"/v1/sessions/{finished['id']}/export?format=markdown")
    assert response.mimetype == "text/markdown"
    text = response.get_data(as_text=True)
    assert "\\*bold\\*" in text and "&lt;b&gt;" in text and "<b>" not in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "Rank" not in line]
    stored = finished["rounds"][0]["aggregate"]
    assert len(rows) == len(stored)
    for row, standing in zip(rows, stored, strict=True):
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[0] == str(standing["rank"])
        assert cells[1] == standing["name"].replace("-", "\\-").replace(".", "\\.")
        assert cells[2] == f"{standing['mean_rank']:.2f}"
        assert cells[3] == str(standing["ballots"])
        assert cells[4] == f"{standing['disagreement']:.2f}"
    assert finished["rounds"][0]["synthesis"]["content"].split("\n")[0] in text


def test_exports_in_json_one_and_all(client, finished):
    one = client.get(f"/v1/sessions/{finished['id']}/export")
    assert json.loads(one.data)["id"] == finished["id"]
    assert "attachment" in one.headers["Content-Disposition"]
    client.post("/v1/sessions", json={"question": "Another"})
    everything = json.loads(client.get("/v1/sessions/export").data)
    assert {s["id"] for s in everything} >= {finished["id"]}
    assert len(everything) == 2
    assert client.get("/v1/sessions/export?format=pdf").status_code == 400


def test_usage_is_summed_per_round_and_session(finished):
    round_ = finished["rounds"][0]
    calls = [*round_["answers"], *round_["ballots"], round_["synthesis"]]
    assert len(calls) == 2 * len(MEMBER_IDS) + 1
    total = sum(call["usage"]["total_tokens"] for call in calls)
    assert round_["usage"]["total_tokens"] == total == finished["usage"]["total_tokens"] > 0
    assert round_["synthesis"]["model"] == CHAIRMAN


def test_cost_comes_from_the_roster_prices(environ, worker, tmp_path):
    from api import create_app
    from shared.settings import load_settings

    prices = {m: {"price_prompt": 1.0, "price_completion": 2.0}
              for m in [*MEMBER_IDS, CHAIRMAN]}
    environ["COUNCIL_MODEL_OPTIONS"] = json.dumps(prices)
    client = create_app(load_settings(environ)).test_client()
    worker()
    created = client.post("/v1/sessions", json={"question": "How much?"})
    session = poll_until_terminal(client, created.headers["Location"])
    answer = session["rounds"][0]["answers"][0]
    usage = answer["usage"]
    expected = (usage["prompt_tokens"] * 1.0 + usage["completion_tokens"] * 2.0) / 1e6
    assert usage["cost"] == pytest.approx(expected)
    assert session["usage"]["cost"] > 0
