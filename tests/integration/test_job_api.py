"""The job API: idempotent submission, cheap polling, long-poll, cancel, caching."""

from __future__ import annotations

import threading
import time

import pytest

from api import create_app
from api.events import stream_slot
from api.idempotency import _fingerprint
from shared.metrics import CACHE_OPERATIONS
from shared.queue import INTERACTIVE_QUEUE
from shared.settings import load_settings
from tests.integration.test_round_trip import poll_until_terminal
from tests.support.processes import wait_for

pytestmark = pytest.mark.integration

QUESTION = {"question": "What is the boiling point of water?"}


def test_ten_concurrent_identical_posts_create_one_session_and_one_task(app, redis_server):
    answers = []

    def submit():
        with app.test_client() as client:
            response = client.post("/v1/sessions", json=QUESTION,
                                   headers={"Idempotency-Key": "same-key"})
            answers.append((response.status_code, response.get_json()))

    threads = [threading.Thread(target=submit) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    created = [body["id"] for status, body in answers if status == 202]
    in_flight = [body for status, body in answers if status == 409]
    assert len(created) + len(in_flight) == 10, answers
    assert len(set(created)) == 1
    assert all(body["error"]["code"] == "request_in_progress" for body in in_flight)
    with app.test_client() as client:
        assert len(client.get("/v1/sessions").get_json()["data"]) == 1
    assert redis_server.client().llen(INTERACTIVE_QUEUE) == 1


def test_a_retried_post_replays_the_first_answer(client, redis_server):
    first = client.post("/v1/sessions", json=QUESTION, headers={"Idempotency-Key": "k1"})
    again = client.post("/v1/sessions", json=QUESTION, headers={"Idempotency-Key": "k1"})
    assert again.status_code == first.status_code == 202
    assert again.get_json() == first.get_json()
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert redis_server.client().llen(INTERACTIVE_QUEUE) == 1


def test_the_same_key_with_another_body_is_422(client):
    client.post("/v1/sessions", json=QUESTION, headers={"Idempotency-Key": "k2"})
    other = client.post("/v1/sessions", json={"question": "Something else?"},
                        headers={"Idempotency-Key": "k2"})
    assert other.status_code == 422
    assert other.get_json()["error"]["code"] == "idempotency_key_reused"


def test_a_key_still_in_flight_is_409(app, client):
    with app.test_request_context("/v1/sessions", method="POST", json=QUESTION):
        fingerprint = _fingerprint()
    app.extensions["llm_council"].store.begin_idempotent("", "k3", fingerprint, time.time())
    response = client.post("/v1/sessions", json=QUESTION, headers={"Idempotency-Key": "k3"})
    assert response.status_code == 409
    assert response.headers["Retry-After"]


def test_a_refused_request_does_not_burn_its_key(client):
    bad = client.post("/v1/sessions", json={"question": ""}, headers={"Idempotency-Key": "k4"})
    assert bad.status_code == 400
    good = client.post("/v1/sessions", json=QUESTION, headers={"Idempotency-Key": "k4"})
    assert good.status_code == 202


def test_an_unchanged_session_is_304_and_a_changed_one_has_a_new_etag(client, worker):
    created = client.post("/v1/sessions", json=QUESTION)
    location = created.headers["Location"]
    first = client.get(location)
    assert first.headers["Retry-After"] and first.headers["Cache-Control"] == "no-store"
    unchanged = client.get(location, headers={"If-None-Match": first.headers["ETag"]})
    assert unchanged.status_code == 304 and unchanged.data == b""
    worker()
    poll_until_terminal(client, location)
    changed = client.get(location, headers={"If-None-Match": first.headers["ETag"]})
    assert changed.status_code == 200
    assert changed.headers["ETag"] != first.headers["ETag"]
    assert "Retry-After" not in changed.headers


def test_a_long_poll_returns_when_the_session_changes(client, worker):
    created = client.post("/v1/sessions", json=QUESTION)
    location = created.headers["Location"]
    etag = client.get(location).headers["ETag"]
    worker()
    changed = client.get(f"{location}?wait=20", headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["ETag"] != etag


def test_a_long_poll_with_nothing_new_ends_in_304(client):
    location = client.post("/v1/sessions", json=QUESTION).headers["Location"]
    etag = client.get(location).headers["ETag"]
    response = client.get(f"{location}?wait=0.5", headers={"If-None-Match": etag})
    assert response.status_code == 304
    assert client.get(f"{location}?wait=31").status_code == 400
    assert client.get(f"{location}?wait=soon").status_code == 400


def test_a_long_poll_until_finished_answers_with_the_ended_round(client, worker):
    location = client.post("/v1/sessions", json=QUESTION).headers["Location"]
    worker()
    ended = client.get(f"{location}?wait=30&until=finished")
    assert ended.status_code == 200
    assert ended.get_json()["rounds"][-1]["status"] == "completed"
    assert "Retry-After" not in ended.headers
    assert client.get(f"{location}?wait=1&until=soon").status_code == 400


def test_a_long_poll_answers_at_once_when_no_wait_slot_is_free(environ):
    app = create_app(load_settings({**environ, "SSE_MAX_STREAMS": "1"}))
    client = app.test_client()
    location = client.post("/v1/sessions", json=QUESTION).headers["Location"]
    answers = []

    def poll() -> None:
        answers.append(client.get(f"{location}?wait=30&until=finished"))

    with app.app_context(), stream_slot() as held:
        assert held
        polling = threading.Thread(target=poll)
        polling.start()
        polling.join(timeout=10)  # a wait would take 30 s; no free slot means no wait
        assert not polling.is_alive()
    assert answers[0].status_code == 200
    assert answers[0].get_json()["rounds"][-1]["status"] == "queued"
    assert answers[0].headers["Retry-After"]


def test_only_finished_sessions_are_cached_and_a_round_makes_no_cache_writes(
    client, worker, redis_server
):
    location = client.post("/v1/sessions", json=QUESTION).headers["Location"]
    session_id = location.rsplit("/", 1)[1]
    hits = CACHE_OPERATIONS.labels(operation="get", result="hit")
    before = hits._value.get()
    client.get(location)
    client.get(location)
    assert hits._value.get() == before, "a queued session is read from the store each time"
    worker()
    assert poll_until_terminal(client, location)["rounds"][0]["status"] == "completed"
    entry, version = f"llmc:cache:session:{session_id}", f"llmc:cache:session:{session_id}:v"
    assert not redis_server.client().exists(version), "the round's writes dropped nothing"

    first = client.get(location)
    assert client.get(location).data == first.data
    assert hits._value.get() >= before + 1
    assert redis_server.client().exists(entry)
    follow_up = client.post(f"{location}/rounds", json={"question": "And at altitude?"})
    assert follow_up.status_code == 202
    assert not redis_server.client().exists(entry), "a write that reopens it drops the entry"
    assert [r["status"] for r in client.get(location).get_json()["rounds"]][0] == "completed"
    assert len(client.get(location).get_json()["rounds"]) == 2


def test_cancelling_a_running_round_ends_it_cancelled(client, worker, sim):
    sim.set_faults(model="*", latency_ms=3000)
    worker()
    location = client.post("/v1/sessions", json=QUESTION).headers["Location"]
    session_id = location.rsplit("/", 1)[1]
    wait_running(client, location)
    cancelled = client.post(f"/v1/sessions/{session_id}/cancel")
    assert cancelled.status_code == 200
    final = poll_until_terminal(client, location)
    assert final["rounds"][0]["status"] == "cancelled"
    assert client.post(f"/v1/sessions/{session_id}/cancel").get_json()["status"] == "cancelled"


def wait_running(client, location):
    wait_for(lambda: client.get(location).get_json()["status"] == "running", "the round to run")


def test_list_filters_by_status_pinned_and_text(client):
    ids = {}
    for word in ("apples", "pears", "plums"):
        ids[word] = client.post("/v1/sessions", json={"question": f"Tell me about {word}"}
                                ).get_json()["id"]
    client.patch(f"/v1/sessions/{ids['plums']}", json={"pinned": True})
    listed = client.get("/v1/sessions").get_json()["data"]
    assert listed[0]["id"] == ids["plums"]
    assert [s["id"] for s in client.get("/v1/sessions?q=PEARS").get_json()["data"]] == [
        ids["pears"]]
    assert [s["id"] for s in client.get("/v1/sessions?pinned=true").get_json()["data"]] == [
        ids["plums"]]
    assert len(client.get("/v1/sessions?status=queued").get_json()["data"]) == 3
    assert client.get("/v1/sessions?status=completed").get_json()["data"] == []
    assert client.get("/v1/sessions?status=bogus").status_code == 400
    assert client.get("/v1/sessions?pinned=maybe").status_code == 400
