"""RabbitMQ as the broker: rounds travel through AMQP while Redis keeps the shared state.

These tests need a RabbitMQ server on 127.0.0.1:5672 that lets guest/guest in, and
``rabbitmqctl`` to give each test a virtual host of its own (so nothing a test leaves behind
reaches another run); they are skipped, with the reason, when either is missing.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import uuid

import httpx
import pytest
import redis

from api import create_app
from shared.queue import QUEUES, RUN_ROUND, make_celery, queue_depths, queue_for
from tests.conftest import CHAIRMAN, MEMBERS
from tests.integration.test_round_trip import TERMINAL, poll_until_terminal
from tests.support.processes import LoggedProcess, free_port, wait_for

pytestmark = pytest.mark.integration

AMQP_ADDRESS = ("127.0.0.1", 5672)
ROUND_CALLS = 2 * len(MEMBERS.split(",")) + 1


def rabbitmqctl(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([shutil.which("rabbitmqctl") or "rabbitmqctl", *arguments],
                          capture_output=True, text=True, timeout=60)


def queues_in(vhost: str) -> set[str]:
    listed = rabbitmqctl("-q", "list_queues", "-p", vhost, "--no-table-headers", "name")
    assert listed.returncode == 0, listed.stderr
    return set(listed.stdout.split())


@pytest.fixture
def vhost():
    """A RabbitMQ virtual host of this test's own, deleted afterwards."""
    try:
        socket.create_connection(AMQP_ADDRESS, timeout=1).close()
    except OSError as error:
        pytest.skip(f"RabbitMQ is not reachable on {AMQP_ADDRESS[0]}:{AMQP_ADDRESS[1]}: {error}")
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is not installed: no virtual host of the test's own can be made")
    name = f"llm-council-test-{uuid.uuid4().hex[:12]}"
    made = rabbitmqctl("add_vhost", name)
    if made.returncode != 0:
        pytest.skip(f"rabbitmqctl cannot add a virtual host: {made.stderr.strip()}")
    allowed = rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    assert allowed.returncode == 0, allowed.stderr
    yield name
    rabbitmqctl("delete_vhost", name)


@pytest.fixture
def broker_url(vhost):
    return f"amqp://guest:guest@{AMQP_ADDRESS[0]}:{AMQP_ADDRESS[1]}/{vhost}"


@pytest.fixture
def environ(environ, broker_url):
    """The shared test environment, with RabbitMQ as the broker and Redis for shared state."""
    return {**environ, "BROKER_URL": broker_url}


def test_a_round_travels_through_rabbitmq(client, worker, sim, redis_server, vhost):
    worker()
    response = client.post("/v1/sessions", json={"question": "Why is the sky blue?"})
    assert response.status_code == 202

    session = poll_until_terminal(client, response.headers["Location"])
    assert session["rounds"][0]["status"] == "completed", session["rounds"][0]
    assert sim.stats()["total"] == ROUND_CALLS
    assert set(QUEUES) <= queues_in(vhost), "the worker consumes its queues on RabbitMQ"
    assert redis_server.client().keys("_kombu*") == [], "Redis carried no broker traffic"


def test_queue_depths_count_what_waits_in_rabbitmq(settings):
    celery = make_celery(settings)
    for _ in range(2):
        celery.send_task(RUN_ROUND, args=["no-such-session", 1], queue=queue_for("batch"))
    assert queue_depths(celery) == {"interactive": 0, "batch": 2, "webhooks": 0}


def test_ready_checks_rabbitmq_as_the_broker(client, settings):
    body = client.get("/ready").get_json()
    assert body["status"] == "ready"
    assert all(check["ok"] for check in body["checks"].values())

    nowhere = f"amqp://guest:guest@127.0.0.1:{free_port()}//"
    broken = create_app(settings.with_overrides(broker_url=nowhere, redis_socket_timeout_s=1))
    body = broken.test_client().get("/ready").get_json()
    checks = body["checks"] if "checks" in body else body["error"]["details"]
    assert checks["broker"]["ok"] is False
    assert checks["redis"]["ok"] is True and checks["store"]["ok"] is True


def test_up_uses_rabbitmq_and_still_starts_redis_for_shared_state(tmp_path, sim, broker_url,
                                                                    vhost):
    port, data_dir = free_port(), tmp_path / "data"
    env = {key: value for key, value in os.environ.items()
           if key not in {"REDIS_URL", "MONGODB_URL"}}
    env.update(BROKER_URL=broker_url, OPENROUTER_API_KEY="simulated",
               OPENROUTER_BASE_URL=sim.base_url, COUNCIL_MEMBERS=MEMBERS,
               COUNCIL_CHAIRMAN=CHAIRMAN)
    argv = [sys.executable, "-m", "shared.cli", "up", "--port", str(port),
            "--data-dir", str(data_dir)]
    process = LoggedProcess(argv, env, "llm-council up")
    try:
        process.wait_for_line("LLM Council is up", timeout_s=60)
        url = f"http://127.0.0.1:{port}"
        location = httpx.post(f"{url}/v1/sessions", json={"question": "Is it raining?"},
                              timeout=10).headers["Location"]

        def finished():
            round_ = httpx.get(f"{url}{location}", timeout=10).json()["rounds"][0]
            return round_ if round_["status"] in TERMINAL else None

        assert wait_for(finished, "the round to finish", 60)["status"] == "completed"
        assert httpx.get(f"{url}/ready", timeout=10).json()["status"] == "ready"
        embedded = redis.Redis(unix_socket_path=str(data_dir / "redis.sock"))
        assert embedded.ping(), "the embedded Redis serves the shared state"
        assert embedded.keys("_kombu*") == [], "and carries no broker traffic"
        embedded.close()
    finally:
        process.stop()
    assert sim.stats()["total"] == ROUND_CALLS
    assert set(QUEUES) <= queues_in(vhost)
