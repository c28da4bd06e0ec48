"""Worker pools: each pool runs only the rounds of the queues it consumes."""

from __future__ import annotations

import json

import pytest

from shared import records
from shared.queue import RUN_ROUND, QueueGauge, make_celery, queue_depths, queue_for
from shared.store import open_store
from tests.conftest import MEMBERS
from tests.integration.test_round_trip import poll_until_terminal
from tests.support.processes import wait_for

pytestmark = pytest.mark.integration

MEMBER_IDS = MEMBERS.split(",")


def test_interactive_and_batch_rounds_run_in_their_own_pools(client, worker, sim, settings):
    interactive = worker("interactive", queues=(queue_for("interactive"),))
    batch = worker("batch", queues=(queue_for("batch"),))

    submitted = client.post("/v1/sessions", json={"question": "Asked by a person waiting"})
    assert submitted.status_code == 202
    by_person = submitted.get_json()["id"]

    store = open_store(settings)
    session = records.new_session("Asked in bulk", MEMBER_IDS, settings.roster.chairman,
                                  priority="batch")
    store.create_session(session)
    store.close()
    queue = queue_for(session["priority"])
    make_celery(settings).send_task(RUN_ROUND, args=[session["id"], 1], queue=queue)

    for session_id in (by_person, session["id"]):
        finished = poll_until_terminal(client, f"/v1/sessions/{session_id}")
        assert finished["rounds"][0]["status"] == "completed"

    interactive.wait_for_line(by_person)
    batch.wait_for_line(session["id"])
    assert not any(session["id"] in line for line in interactive.lines)
    assert not any(by_person in line for line in batch.lines)
    assert sim.stats()["total"] == 2 * (2 * len(MEMBER_IDS) + 1)


def test_the_sweeper_puts_a_lost_batch_round_back_on_the_batch_queue(
    client, worker, beat, sim, settings, redis_server
):
    interactive = worker("interactive", queues=(queue_for("interactive"),))
    store = open_store(settings)
    lost = records.new_session("Enqueued, then lost by the broker", MEMBER_IDS,
                               settings.roster.chairman, priority="batch")
    store.create_session(lost)
    store.close()

    waiting = redis_server.client()
    wait_for(lambda: waiting.llen(queue_for("batch")) > 0, "the sweeper to re-enqueue the round")
    batch = worker("batch", queues=(queue_for("batch"),))
    finished = poll_until_terminal(client, f"/v1/sessions/{lost['id']}")
    assert finished["rounds"][0]["status"] == "completed"
    batch.wait_for_line(lost["id"])
    # The interactive pool runs the sweeper, which names the round, but never the round itself.
    assert any("re-enqueued" in line and lost["id"] in line for line in interactive.lines)
    assert not any(RUN_ROUND in line and lost["id"] in line for line in interactive.lines)


def test_queue_depths_count_what_waits_in_each_queue(settings):
    celery = make_celery(settings)
    for _ in range(3):
        celery.send_task(RUN_ROUND, args=["no-such-session", 1], queue=queue_for("batch"))
    celery.send_task(RUN_ROUND, args=["no-such-session", 1])
    assert queue_depths(celery) == {"interactive": 1, "batch": 3, "webhooks": 0}


def test_a_queue_gauge_reads_the_same_depths_over_its_kept_channel(settings):
    celery = make_celery(settings)
    gauge = QueueGauge(celery)
    try:
        assert gauge.depth("batch") == 0  # never declared
        for expected in (1, 2, 3):
            celery.send_task(RUN_ROUND, args=["no-such-session", 1], queue=queue_for("batch"))
            assert gauge.depth("batch") == expected
        assert gauge.depth("interactive") == 0
        gauge.close()
        assert gauge.depth("batch") == 3 == queue_depths(celery, ["batch"])["batch"]
    finally:
        gauge.close()


def test_a_batch_submission_runs_in_the_batch_pool_while_the_interactive_pool_idles(
    client, worker, sim
):
    sim.set_faults(model="*", latency_ms=1500)  # keeps the round running while we look
    worker("interactive", queues=(queue_for("interactive"),))
    worker("batch", queues=(queue_for("batch"),))
    created = client.post("/v1/sessions", json={"question": "Bulk work", "priority": "batch"})
    assert created.status_code == 202 and created.get_json()["priority"] == "batch"
    session_id = created.get_json()["id"]

    def active_task():
        tasks = client.get("/v1/admin/tasks?state=active").get_json()["data"]
        return next((t for t in tasks if t.get("session_id") == session_id), None)

    task = wait_for(active_task, "the batch round to be active", timeout_s=20)
    assert task["worker"].startswith("batch@") and task["queue"] == "batch"
    pools = {w["name"].split("@")[0]: w for w in client.get("/v1/admin/workers").get_json()["data"]}
    assert pools["batch"]["active"] >= 1
    assert pools["interactive"]["active"] == 0 and pools["interactive"]["reserved"] == 0
    finished = poll_until_terminal(client, f"/v1/sessions/{session_id}")
    assert finished["rounds"][0]["status"] == "completed"


@pytest.mark.parametrize("event_loop", ["uvloop", "asyncio"])
def test_a_worker_runs_its_rounds_on_the_event_loop_it_is_set_to(
        client, worker, sim, event_loop):
    process = worker("looped", env={"WORKER_EVENT_LOOP": event_loop})
    submitted = client.post("/v1/sessions", json={"question": "Which loop?"})
    assert submitted.status_code == 202
    finished = poll_until_terminal(client, submitted.headers["Location"])
    assert finished["rounds"][0]["status"] == "completed"
    ready = json.loads(process.wait_for_line("worker runtime ready"))
    assert ready["event_loop"] == event_loop
