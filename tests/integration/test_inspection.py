"""Inspection for the admin scope, against real Celery workers on a real Redis broker.

A slow simulator keeps a round running while the workers are asked what they hold; a revoked
round is offered to a worker afterwards and never reaches the simulator.
"""

from __future__ import annotations

import pytest
import redis

from api.submission import task_key
from shared.keys import issue_key
from shared.provider.breaker import FleetBreakers
from shared.provider.resilient import provider_key
from shared.queue import make_celery
from tests.support.processes import wait_for

pytestmark = pytest.mark.integration

ADMIN_ROUTES = [
    ("get", "/v1/admin/workers"),
    ("get", "/v1/admin/queues"),
    ("get", "/v1/admin/tasks"),
    ("get", "/v1/admin/tasks/some-task"),
    ("post", "/v1/admin/tasks/some-task/revoke"),
    ("get", "/v1/admin/breakers"),
    ("post", "/v1/admin/breakers/sim/alpha/reset"),
]


def ask(client, question: str = "Why is the sky blue?") -> str:
    response = client.post("/v1/sessions", json={"question": question})
    assert response.status_code == 202
    return response.get_json()["id"]


def test_workers_and_a_running_round_are_seen_while_it_runs(client, worker, sim):
    sim.set_faults(model="*", latency_ms=4000)  # the round waits on stage 1 meanwhile
    worker("w1")
    session_id = ask(client)

    def running_task():
        tasks = client.get("/v1/admin/tasks?state=active").get_json()["data"]
        return next((t for t in tasks if t.get("session_id") == session_id), None)

    task = wait_for(running_task, "the round to show among the active tasks", timeout_s=20)
    [listed] = client.get("/v1/admin/workers").get_json()["data"]
    assert listed["name"].startswith("w1@")
    assert listed["pool"] == "thread" and listed["concurrency"] == 20
    assert listed["active"] >= 1
    assert sorted(listed["queues"]) == ["batch", "interactive", "webhooks"]

    found = client.get(f"/v1/admin/tasks/{task['id']}").get_json()
    assert found["state"] == "active" and found["worker"] == listed["name"]
    assert (found["session_id"], found["round_no"]) == (session_id, 1)
    assert found["round"]["status"] == "running" and found["round"]["started_at"]
    assert found["started_at"] and found["queue"] == "interactive"
    assert client.get("/v1/admin/tasks?state=reserved").status_code == 200
    client.post(f"/v1/sessions/{session_id}/cancel")  # the worker stops between calls


def test_a_revoked_round_never_runs(client, worker, sim, settings, redis_server):
    # A worker that hears the revoke, but takes no rounds until it is told to afterwards.
    w1 = worker("w1", queues=("webhooks",))
    session_id = ask(client)
    task_id = redis_server.client().get(task_key(session_id, 1))

    waiting = client.get(f"/v1/admin/tasks/{task_id}").get_json()
    assert (waiting["state"], waiting["session_id"], waiting["round_no"]) == (
        "queued", session_id, 1)
    assert waiting["round"]["status"] == "queued" and waiting["enqueued_at"]
    queues = {q["name"]: q for q in client.get("/v1/admin/queues").get_json()["data"]}
    assert queues["interactive"]["depth"] == 1 and queues["interactive"]["oldest_age_s"] >= 0
    assert queues["batch"] == {"name": "batch", "depth": 0, "oldest_age_s": None}

    revoked = client.post(f"/v1/admin/tasks/{task_id}/revoke")
    assert revoked.status_code == 202
    assert revoked.get_json()["round"] == {"session_id": session_id, "round_no": 1,
                                           "status": "cancelled"}

    [listed] = client.get("/v1/admin/workers").get_json()["data"]
    celery = make_celery(settings)
    celery.control.add_consumer("interactive", destination=[listed["name"]], reply=True)
    w1.wait_for_line(f"Discarding revoked task: workers.tasks.run_round[{task_id}]")
    session = client.get(f"/v1/sessions/{session_id}").get_json()
    assert session["rounds"][0]["status"] == "cancelled"
    assert sim.stats()["total"] == 0


def worker_breakers(settings, redis_server) -> FleetBreakers:
    """Return the breakers as a worker process of the fleet sees them."""
    return FleetBreakers(settings.circuit_breaker_fail_max, settings.circuit_breaker_timeout_s,
                         provider_key(settings.provider_base_url),
                         redis.Redis.from_url(redis_server.url))


def test_breakers_are_listed_and_reset_for_the_whole_fleet(client, settings, redis_server):
    fleet = worker_breakers(settings, redis_server)
    fleet.for_model("sim/beta").breaker.open()  # as a worker's failing calls would

    listed = {b["model"]: b for b in client.get("/v1/admin/breakers").get_json()["data"]}
    assert listed["sim/beta"]["state"] == "open" and listed["sim/beta"]["opened_at"]
    assert listed["sim/alpha"]["state"] == "closed" and listed["sim/alpha"]["opened_at"] is None
    assert client.get("/ready").get_json()["open_breakers"] == ["sim/beta"]

    reset = client.post("/v1/admin/breakers/sim/beta/reset")
    assert reset.status_code == 200 and reset.get_json()["state"] == "closed"
    other = worker_breakers(settings, redis_server)
    assert other.for_model("sim/beta").state == "closed"
    other.close()
    assert client.get("/ready").get_json()["open_breakers"] == []
    assert client.post("/v1/admin/breakers/sim/nobody/reset").status_code == 404
    fleet.close()


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
def test_admin_routes_need_an_admin_key(app, client, method, path):
    store = app.extensions["llm_council"].store
    client_key = issue_key(store, "someone", "client")[1]
    assert getattr(client, method)(path).status_code == 401
    response = getattr(client, method)(path, headers={"Authorization": f"Bearer {client_key}"})
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "forbidden"


def test_metrics_and_the_openapi_document_stay_public_with_keys(app, client):
    issue_key(app.extensions["llm_council"].store, "someone", "client")
    assert client.get("/v1/sessions").status_code == 401
    assert client.get("/metrics").status_code == 200
    assert client.get("/v1/openapi.json").status_code == 200


def test_metrics_can_require_an_admin_key(settings):
    from api import create_app

    app = create_app(settings.with_overrides(metrics_require_key=True))
    client = app.test_client()
    store = app.extensions["llm_council"].store
    keys = {scope: issue_key(store, scope, scope)[1] for scope in ("client", "admin")}
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"X-API-Key": keys["client"]}).status_code == 403
    scraped = client.get("/metrics", headers={"X-API-Key": keys["admin"]})
    assert scraped.status_code == 200 and b"http_requests_total" in scraped.data
