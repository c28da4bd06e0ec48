"""Redis stopped for 5 s during a batch: nothing accepted is lost, new work is refused quickly."""

from __future__ import annotations

import time

import pytest

from tests.faults.checks import assert_nothing_lost, read, submit, wait_until_finished
from tests.support.processes import RedisServer, wait_for

pytestmark = pytest.mark.faults

ROUNDS = 20
OUTAGE_S = 5


@pytest.fixture
def own_redis(tmp_path):
    """A Redis server of this test's own, which it stops and starts again (AOF keeps its data)."""
    folder = tmp_path / "redis"
    folder.mkdir()
    server = RedisServer(folder)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def environ(environ, own_redis):
    return {**environ, "REDIS_URL": own_redis.url, "WORKER_CONCURRENCY": "4"}


def test_a_redis_outage_loses_nothing_and_refuses_new_work_at_once(
    client, worker, beat, sim, own_redis
):
    sim.set_faults(model="*", latency_ms=300)
    worker("first")
    worker("second")
    accepted = [submit(client, f"Round {n}: through the outage?") for n in range(ROUNDS)]
    wait_for(lambda: sim.stats()["in_flight"] > 0, "rounds to be running")

    own_redis.stop()
    outage_ends = time.monotonic() + OUTAGE_S
    refused = client.post("/v1/sessions", json={"question": "Submitted during the outage"})
    assert refused.status_code == 503
    assert int(refused.headers["Retry-After"]) > 0
    assert refused.get_json()["error"]["code"] == "broker_unavailable"
    assert read(client, accepted[0])["id"], "reads go on from the store"
    ready = client.get("/ready").get_json()
    assert ready["status"] == "degraded" and "redis" in ready["unavailable"]
    time.sleep(max(0.0, outage_ends - time.monotonic()))
    own_redis.start()

    sessions = wait_until_finished(client, accepted, timeout_s=120)
    assert [s["rounds"][0]["status"] for s in sessions] == ["completed"] * ROUNDS
    # The workers consume again by themselves: new work is accepted and done.
    after = wait_for(lambda: _accepted(client, "Submitted after the outage"), "a 202 again")
    assert wait_until_finished(client, [after])[0]["rounds"][0]["status"] == "completed"
    assert client.get("/ready").get_json()["status"] == "ready"
    assert_nothing_lost(client, [*accepted, after], sim)


def _accepted(client, question: str) -> str | None:
    response = client.post("/v1/sessions", json={"question": question})
    if response.status_code == 202:
        return response.headers["Location"]
    assert response.status_code == 503, response.get_json()
    time.sleep(0.5)  # as Retry-After asks, only shorter
    return None
