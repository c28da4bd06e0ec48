"""Signed webhooks: a real worker posts to a receiver in this test, retrying on its 5xx."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from api import create_app
from shared import records
from shared.queue import WEBHOOKS_QUEUE
from shared.webhooks import deliver_webhook, webhook_client
from tests.support.processes import wait_for

pytestmark = pytest.mark.integration

SECRET = "test-webhook-secret"
QUESTION = "Is a tomato a fruit?"


class Receiver:
    """A local HTTP endpoint that answers with the statuses it is given and keeps each request."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers),
                                          "body": body})
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/council"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def environ(environ):
    """Webhooks to loopback allowed (the receiver is local), with short backoffs."""
    return {**environ, "WEBHOOK_ALLOW_PRIVATE": "true", "WEBHOOK_SECRET": SECRET,
            "WEBHOOK_BACKOFF_SECONDS": "0.2", "WEBHOOK_MAX_ATTEMPTS": "3",
            "PUBLIC_BASE_URL": "https://council.example.com"}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.stop()


def deliveries(client, session_id: str, count: int) -> list[dict]:
    """Wait until the session records ``count`` delivery attempts; return them."""
    def recorded():
        found = client.get(f"/v1/sessions/{session_id}").get_json()["deliveries"]
        return found if len(found) >= count else None

    return wait_for(recorded, f"{count} webhook attempt(s)", timeout_s=60)


def verify(request: dict) -> dict:
    """Check the signature the way a receiver would; return the body."""
    timestamp = request["headers"]["X-Council-Timestamp"]
    signed = timestamp.encode() + b"." + request["body"]
    expected = "sha256=" + hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(request["headers"]["X-Council-Signature"], expected)
    assert abs(time.time() - int(timestamp)) < 300
    return json.loads(request["body"])


def test_a_finished_round_is_posted_with_a_valid_signature(client, worker, receiver):
    worker()
    created = client.post("/v1/sessions", json={"question": QUESTION,
                                                "callback_url": receiver.url})
    assert created.status_code == 202
    session_id = created.get_json()["id"]

    [attempt] = deliveries(client, session_id, 1)
    assert attempt["status_code"] == 200 and attempt["error"] is None
    assert attempt["attempt"] == 1 and attempt["round_no"] == 1
    assert attempt["duration_ms"] >= 0 and attempt["at"].endswith("Z")
    [request] = receiver.requests
    assert request["path"] == "/hooks/council"
    assert request["headers"]["Content-Type"] == "application/json"
    body = verify(request)
    session = client.get(f"/v1/sessions/{session_id}").get_json()
    assert body == {
        "type": "round.finished", "session_id": session_id, "round_no": 1,
        "status": "completed",
        "session_url": f"https://council.example.com/v1/sessions/{session_id}",
        "finished_at": session["rounds"][0]["finished_at"],
    }


def test_a_failing_receiver_gets_the_webhook_again(client, worker, receiver):
    receiver.statuses = [500]
    worker()
    session_id = client.post("/v1/sessions", json={"question": QUESTION,
                                                   "callback_url": receiver.url}).get_json()["id"]

    first, second = deliveries(client, session_id, 2)
    assert (first["attempt"], first["status_code"]) == (1, 500)
    assert (second["attempt"], second["status_code"]) == (2, 200)
    assert len(receiver.requests) == 2
    assert [verify(r)["session_id"] for r in receiver.requests] == [session_id] * 2


def test_a_round_cancelled_while_queued_is_announced_too(client, worker, receiver):
    session_id = client.post("/v1/sessions", json={"question": QUESTION,
                                                   "callback_url": receiver.url}).get_json()["id"]
    assert client.post(f"/v1/sessions/{session_id}/cancel").status_code == 200
    worker(queues=(WEBHOOKS_QUEUE,))  # only deliveries: no worker ever sees the round

    [attempt] = deliveries(client, session_id, 1)
    assert attempt["status_code"] == 200
    assert verify(receiver.requests[0])["status"] == "cancelled"


def test_a_callback_url_resolving_to_loopback_is_refused(settings):
    client = create_app(settings.with_overrides(webhook_allow_private=False)).test_client()
    for url in ("http://localhost:8080/hook", "http://127.0.0.1/hook", "http://[::1]/hook"):
        response = client.post("/v1/sessions", json={"question": QUESTION, "callback_url": url})
        assert response.status_code == 400, url
        assert "callback_url" in response.get_json()["error"]["details"]
    assert client.get("/v1/sessions").get_json()["data"] == []


# The delivery function itself, called directly against the same receiver -------------------

def finished_session(store, callback_url: str) -> str:
    """Store a session whose only round has completed; return its id."""
    session = records.new_session(QUESTION, ["sim/alpha", "sim/beta"], "sim/chair",
                                  callback_url=callback_url)
    store.create_session(session)
    now = time.time()
    claim = store.claim_round(session["id"], 1, now, now + 60, 3)
    store.finish_round(session["id"], 1, claim.attempt, records.COMPLETED, {"notes": []})
    return session["id"]


@pytest.fixture
def store(app):
    return app.extensions["llm_council"].store


def test_the_url_is_checked_again_before_each_attempt(settings, store, receiver):
    session_id = finished_session(store, receiver.url)
    strict = settings.with_overrides(webhook_allow_private=False)
    with webhook_client(strict) as http:
        delivery = deliver_webhook(store, http, strict, session_id, 1)
    assert delivery.outcome == "failed"
    [attempt] = store.get_session(session_id)["deliveries"]
    assert attempt["status_code"] is None and "refused" in attempt["error"]
    assert receiver.requests == []


def test_redirects_are_not_followed(settings, store, receiver):
    receiver.statuses = [302]
    session_id = finished_session(store, receiver.url)
    with webhook_client(settings) as http:
        delivery = deliver_webhook(store, http, settings, session_id, 1)
    assert delivery.outcome == "failed"
    [attempt] = store.get_session(session_id)["deliveries"]
    assert (attempt["status_code"], attempt["error"]) == (302, "redirect not followed")
    assert [r["path"] for r in receiver.requests] == ["/hooks/council"]


def test_attempts_stop_at_the_cap_and_a_success_is_never_repeated(settings, store, receiver):
    receiver.statuses = [503, 503, 503]
    failing = finished_session(store, receiver.url)
    with webhook_client(settings) as http:
        outcomes = [deliver_webhook(store, http, settings, failing, 1) for _ in range(4)]
        assert [d.outcome for d in outcomes] == ["retry", "retry", "failed", "skipped"]
        assert all(0 < d.retry_in_s <= 0.2 * 2 ** n for n, d in enumerate(outcomes[:2]))
        delivered = finished_session(store, receiver.url)
        twice = [deliver_webhook(store, http, settings, delivered, 1) for _ in range(2)]
    assert [d.outcome for d in twice] == ["delivered", "skipped"]
    assert len(receiver.requests) == 4
