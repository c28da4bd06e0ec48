"""Fixtures shared by every test tier: settings, the app and its client, real processes."""

from __future__ import annotations

import os

import pytest

from api import create_app
from shared.queue import QUEUES
from shared.settings import load_settings
from tests.support.processes import RedisServer, Simulator, start_beat, start_worker

MEMBERS = "sim/alpha,sim/beta,sim/gamma,sim/delta"
CHAIRMAN = "sim/chair"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """One real Redis server for the whole run (fault tests start their own)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def simulator():
    """The simulated provider, shared by the run; counters and faults reset per test."""
    sim = Simulator(latency_ms=20)
    yield sim
    sim.stop()


@pytest.fixture
def sim(simulator):
    simulator.reset()
    return simulator


@pytest.fixture
def environ(tmp_path, redis_server, sim):
    """The environment a test's API and worker processes share (each test its own Redis db)."""
    redis_server.client().flushall()
    return {
        **os.environ,
        "ENVIRONMENT": "test",
        "DATA_DIR": str(tmp_path / "data"),
        "REDIS_URL": redis_server.url,
        "OPENROUTER_BASE_URL": sim.base_url,
        "OPENROUTER_API_KEY": "",
        "COUNCIL_MEMBERS": MEMBERS,
        "COUNCIL_CHAIRMAN": CHAIRMAN,
        "ROUND_LEASE_SECONDS": "3",
        "SWEEP_INTERVAL_SECONDS": "0.5",
        "SWEEP_QUEUED_AFTER_SECONDS": "1",
        "WORKER_CONCURRENCY": "20",
        "LOG_LEVEL": "INFO",
        "MAX_QUESTION_CHARS": "2000",
    }


@pytest.fixture
def settings(environ):
    settings = load_settings(environ)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings


@pytest.fixture
def app(settings):
    return create_app(settings)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def worker(environ):
    """Start real Celery worker processes on demand; stop them all at the end."""
    started = []

    def start(name: str = "w1", queues: tuple[str, ...] = QUEUES, arguments=(), env=None):
        process = start_worker({**environ, **(env or {})}, name, queues, arguments)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def beat(environ, tmp_path):
    process = start_beat(environ, tmp_path / "celerybeat-schedule")
    yield process
    process.stop()
