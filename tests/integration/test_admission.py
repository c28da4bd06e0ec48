"""Work-creating requests: refused at once while the broker is down; quorums stored as asked."""

from __future__ import annotations

import time

import pytest

from api import create_app
from api.admission import CHECK_EVERY_S
from shared.store.sqlite import SqliteStore
from tests.support.processes import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def cut_off(settings):
    """A client whose Redis (the broker) is a port nothing listens on."""
    app = create_app(settings.with_overrides(
        redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_socket_timeout_s=0.5))
    return app.test_client()


def test_new_work_gets_503_with_retry_after_and_nothing_is_stored(cut_off):
    response = cut_off.post("/v1/sessions", json={"question": "Is the queue there?"})
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
    assert response.get_json()["error"]["code"] == "broker_unavailable"
    assert cut_off.get("/v1/sessions").get_json()["data"] == [], "reads go on; nothing stored"


def test_a_follow_up_is_refused_the_same_way(client, settings, cut_off):
    location = client.post("/v1/sessions", json={"question": "First"}).headers["Location"]
    response = cut_off.post(f"{location}/rounds", json={"question": "Second"})
    assert response.status_code == 503 and "Retry-After" in response.headers
    assert len(cut_off.get(location).get_json()["rounds"]) == 1


def test_a_submission_may_set_its_quorums(client, settings):
    body = {"question": "How sure are we?", "min_answers": 3, "min_ballots": 2}
    session_id = client.post("/v1/sessions", json=body).get_json()["id"]
    store = SqliteStore(settings.sqlite_file)
    stored = store.get_session(session_id)
    store.close()
    assert (stored["min_answers"], stored["min_ballots"]) == (3, 2)


@pytest.mark.parametrize("quorum", [
    {"min_answers": 5},        # more than the four members
    {"min_answers": 1},        # ranking needs two answers
    {"min_ballots": 0},
    {"min_answers": "3"},      # a string is not a number
    {"members": ["sim/alpha", "sim/beta"], "min_ballots": 3},
])
def test_impossible_quorums_are_refused(client, quorum):
    response = client.post("/v1/sessions", json={"question": "How sure?", **quorum})
    assert response.status_code == 400
    assert set(response.get_json()["error"]["details"]) & {"min_answers", "min_ballots"}


def test_submissions_wait_out_a_full_queue(settings, redis_server):
    client = create_app(settings.with_overrides(admission_max_queue_depth=2)).test_client()
    for _ in range(2):
        assert client.post("/v1/sessions", json={"question": "q"}).status_code == 202
    time.sleep(CHECK_EVERY_S + 0.1)  # each API process measures the depth once a period
    full = client.post("/v1/sessions", json={"question": "one too many"})
    assert full.status_code == 503
    assert full.get_json()["error"]["code"] == "queue_full"
    assert int(full.headers["Retry-After"]) > 0
    assert len(client.get("/v1/sessions").get_json()["data"]) == 2
    batch = client.post("/v1/sessions", json={"question": "later", "priority": "batch"})
    assert batch.status_code == 202, "the batch queue is not full"


def test_a_cancel_while_redis_is_down_still_cancels(client, cut_off):
    location = client.post("/v1/sessions", json={"question": "Never mind"}).headers["Location"]
    response = cut_off.post(f"{location}/cancel")
    assert response.status_code == 200
    assert response.get_json()["rounds"][0]["status"] == "cancelled"


def test_a_redis_failure_on_a_read_is_503_not_500(settings):
    app = create_app(settings.with_overrides(
        redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_socket_timeout_s=0.5))

    @app.get("/v1/_probe")
    def probe():
        app.extensions["llm_council"].redis.get("anything")

    response = app.test_client().get("/v1/_probe")
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "redis_unavailable"
    assert int(response.headers["Retry-After"]) > 0
