"""Live progress over SSE: a real API process, a real worker, the simulator, Redis Streams."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import httpx
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from shared.events import EventLog, EventPublisher
from shared.keys import issue_key
from tests.conftest import MEMBERS
from tests.support.processes import free_port, start_api, wait_for

pytestmark = pytest.mark.integration

MEMBER_IDS = MEMBERS.split(",")
QUESTION = {"question": "Why do leaves change colour?"}
READ_TIMEOUT_S = 20  # a stream that neither sends nor ends by then has failed the test
ROUND_TYPES = (
    ["round.queued", "stage.started"] + ["answer.recorded"] * len(MEMBER_IDS)
    + ["stage.started"] + ["ballot.recorded"] * len(MEMBER_IDS)
    + ["stage.started", "synthesis.recorded", "round.finished"]
)
EVENT_FIELDS = {"type", "round_no", "stage", "member", "ok", "reviewer", "valid", "model", "status"}


@pytest.fixture
def environ(environ):
    return {**environ, "SSE_HEARTBEAT_SECONDS": "0.5"}


@pytest.fixture
def api(environ):
    process, url = start_api(environ)
    with httpx.Client(base_url=url, timeout=READ_TIMEOUT_S) as http:
        yield http
    process.stop()


def read_stream(response: httpx.Response, stop_after: int | None = None) -> Iterator[dict]:
    """Yield the stream's events as {id, event, data} and its pings as {"ping": True}."""
    fields: dict = {}
    for line in response.iter_lines():
        if line == ": ping":
            yield {"ping": True}
        elif line.startswith(("id: ", "event: ", "data: ")):
            name, _, value = line.partition(": ")
            fields[name] = json.loads(value) if name == "data" else value
        elif not line and "id" in fields:
            yield fields
            fields = {}
            if stop_after is not None:
                stop_after -= 1
                if stop_after == 0:
                    return


def events_of(http: httpx.Client, session_id: str, last_id: str | None = None) -> list[dict]:
    """Read a whole stream, until the server ends it."""
    headers = {"Last-Event-ID": last_id} if last_id else {}
    with http.stream("GET", f"/v1/sessions/{session_id}/events", headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return [e for e in read_stream(response) if "ping" not in e]


def past_answers(http: httpx.Client, session_id: str) -> bool:
    """Tell whether the round has left its answers stage (events were added since)."""
    round_ = http.get(f"/v1/sessions/{session_id}").json()["rounds"][-1]
    return round_["stage"] in ("rankings", "synthesis") or round_["status"] == "completed"


def test_a_client_that_reconnects_gets_every_event_once_in_order(api, worker, sim):
    sim.set_faults(model="*", latency_ms=300)  # a round long enough to leave in the middle
    worker()
    session_id = api.post("/v1/sessions", json=QUESTION).json()["id"]

    path = f"/v1/sessions/{session_id}/events"
    with api.stream("GET", path) as response:
        first = list(read_stream(response, stop_after=3))  # queued, answers, the first answer
    assert [e["event"] for e in first] == ["round.queued", "stage.started", "answer.recorded"]
    wait_for(lambda: past_answers(api, session_id), "the round to go on without the client")

    rest = events_of(api, session_id, last_id=first[-1]["id"])
    whole = events_of(api, session_id)

    assert first + rest == whole
    assert [e["event"] for e in whole] == ROUND_TYPES
    assert [e["data"]["type"] for e in whole] == ROUND_TYPES
    ids = [tuple(map(int, e["id"].split("-"))) for e in whole]
    assert ids == sorted(set(ids))
    assert whole[-1]["data"] == {"type": "round.finished", "round_no": 1, "status": "completed"}
    assert sorted(e["data"]["member"] for e in whole if e["event"] == "answer.recorded") == sorted(
        MEMBER_IDS)
    assert all(set(e["data"]) <= EVENT_FIELDS for e in whole), "events carry ids, not content"


def test_a_stream_ends_after_the_round_ends_and_then_answers_204(api, worker):
    worker()
    session_id = api.post("/v1/sessions", json=QUESTION).json()["id"]
    live = events_of(api, session_id)  # returns only because the server ended the stream
    assert live[-1]["event"] == "round.finished"

    again = api.get(f"/v1/sessions/{session_id}/events",
                    headers={"Last-Event-ID": live[-1]["id"]})
    assert again.status_code == 204

    follow_up = api.post(f"/v1/sessions/{session_id}/rounds", json={"question": "And why?"})
    assert follow_up.status_code == 202
    second = events_of(api, session_id, last_id=live[-1]["id"])
    assert {e["data"]["round_no"] for e in second} == {2}
    assert second[0]["event"] == "round.queued" and second[-1]["event"] == "round.finished"


def test_a_waiting_stream_pings_and_ends_when_its_queued_round_is_cancelled(api):
    session_id = api.post("/v1/sessions", json=QUESTION).json()["id"]  # no worker: it waits
    seen = []
    with api.stream("GET", f"/v1/sessions/{session_id}/events") as response:
        for item in read_stream(response):
            seen.append(item)
            if sum("ping" in i for i in seen) == 2:
                assert api.post(f"/v1/sessions/{session_id}/cancel").status_code == 200
    events = [i for i in seen if "ping" not in i]
    assert [e["event"] for e in events] == ["round.queued", "round.finished"]
    assert events[-1]["data"]["status"] == "cancelled"


def test_another_clients_session_is_404_and_a_bad_event_id_400(app, client):
    store = app.extensions["llm_council"].store
    alice, bob = (issue_key(store, name, "client")[1] for name in ("alice", "bob"))
    created = client.post("/v1/sessions", json=QUESTION,
                          headers={"Authorization": f"Bearer {alice}"})
    path = f"/v1/sessions/{created.get_json()['id']}/events"

    response = client.get(path, headers={"Authorization": f"Bearer {bob}"})
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"
    response = client.get(path, headers={"Authorization": f"Bearer {alice}",
                                         "Last-Event-ID": "not-an-id"})
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_last_event_id"


def test_events_are_dropped_with_a_warning_when_redis_is_down(caplog):
    nobody = redis.Redis(port=free_port(), socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
    publisher = EventPublisher(EventLog(nobody, max_len=100, ttl_s=60))
    with caplog.at_level(logging.WARNING, logger="shared.events"):
        publisher("s1", 1, "answer", {"member": "sim/alpha", "ok": True, "content": "secret"})
        publisher.close()
    assert "progress events dropped" in caplog.text


def test_the_stream_is_capped_and_expires(redis_server):
    events = EventLog(redis_server.client(), max_len=10, ttl_s=60)
    for number in range(300):
        assert events.append("capped", {"type": "stage.started", "round_no": number})
    kept = redis_server.client().xlen("llmc:events:capped")
    assert 10 <= kept < 300  # MAXLEN ~ trims whole nodes, never below the cap
    assert 0 < redis_server.client().ttl("llmc:events:capped") <= 60
