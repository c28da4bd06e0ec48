"""Routing and the Celery configuration: one place names the queues, and both brokers are right."""

from __future__ import annotations

import pytest

from shared.embedded import worker_arguments
from shared.queue import (
    BATCH_QUEUE,
    DELIVER_WEBHOOK,
    INTERACTIVE_QUEUE,
    PRIORITIES,
    QUEUES,
    REDIS_TRANSPORT,
    RUN_ROUND,
    SWEEP,
    WEBHOOKS_QUEUE,
    broker_transport,
    celery_config,
    is_amqp,
    make_celery,
    queue_for,
)
from shared.settings import load_settings

REDIS = {"REDIS_URL": "redis://127.0.0.1:6379/0"}
RABBITMQ = {**REDIS, "BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//"}
REDIS_ONLY_OPTIONS = {
    "visibility_timeout", "socket_timeout", "socket_connect_timeout", "max_connections"
}


def routed_queue(settings, task: str, **options: object) -> str:
    """Return the queue Celery's own router picks for ``task`` sent with ``options``."""
    return make_celery(settings).amqp.router.route(options, task)["queue"].name


def test_each_priority_has_its_own_queue():
    assert queue_for("interactive") == INTERACTIVE_QUEUE
    assert queue_for("batch") == BATCH_QUEUE
    assert {queue_for(priority) for priority in PRIORITIES} <= set(QUEUES)


@pytest.mark.parametrize("priority", ["", "low", "Interactive", "webhooks"])
def test_an_unknown_priority_is_refused(priority):
    with pytest.raises(ValueError, match="unknown priority"):
        queue_for(priority)


def test_tasks_are_routed_to_their_queues():
    settings = load_settings(REDIS)
    assert routed_queue(settings, RUN_ROUND) == INTERACTIVE_QUEUE
    assert routed_queue(settings, SWEEP) == INTERACTIVE_QUEUE
    assert routed_queue(settings, DELIVER_WEBHOOK) == WEBHOOKS_QUEUE


@pytest.mark.parametrize("priority", PRIORITIES)
def test_the_queue_an_enqueuer_names_wins_over_the_route(priority):
    settings = load_settings(REDIS)
    assert routed_queue(settings, RUN_ROUND, queue=queue_for(priority)) == priority


def test_every_route_and_the_default_name_a_declared_queue():
    config = celery_config(load_settings(REDIS))
    targets = {route["queue"] for route in config["task_routes"].values()}
    assert targets | {config["task_default_queue"]} <= set(QUEUES)


@pytest.mark.parametrize(
    ("url", "amqp"),
    [
        ("amqp://guest:guest@127.0.0.1:5672//", True),
        ("amqps://user:secret@rabbit.example:5671/council", True),
        ("pyamqp://127.0.0.1//", True),
        ("redis://127.0.0.1:6379/0", False),
        ("rediss://cache.example:6380/0", False),
        ("redis+socket:///tmp/redis.sock", False),
    ],
)
def test_the_broker_kind_follows_the_url_scheme(url, amqp):
    assert is_amqp(url) is amqp


@pytest.mark.parametrize(
    ("url", "transport"),
    [
        ("redis://127.0.0.1:6379/0", REDIS_TRANSPORT),
        ("REDIS://127.0.0.1:6379/0", REDIS_TRANSPORT),
        ("rediss://cache.example:6380/0", None),
        ("redis+socket:///tmp/redis.sock", None),
        ("sentinel://127.0.0.1:26379", None),
        ("amqp://guest:guest@127.0.0.1:5672//", None),
    ],
)
def test_plain_redis_brokers_get_the_transport_that_keeps_its_client(url, transport):
    assert broker_transport(url) == transport


def test_celery_connects_to_a_redis_broker_through_that_transport():
    from shared.redis_broker import Transport

    redis_app = make_celery(load_settings(REDIS))
    rabbit_app = make_celery(load_settings(RABBITMQ))
    with redis_app.connection_for_write() as redis_conn, \
            rabbit_app.connection_for_write() as rabbit_conn:
        assert isinstance(redis_conn.transport, Transport)  # made, not connected
        assert not isinstance(rabbit_conn.transport, Transport)


def test_redis_redelivers_only_after_a_visibility_timeout_longer_than_a_round():
    config = celery_config(load_settings(REDIS))
    options = config["broker_transport_options"]
    assert options["visibility_timeout"] > config["task_time_limit"]
    assert options["socket_timeout"] == options["socket_connect_timeout"] == 2.0


def test_rabbitmq_gets_no_redis_transport_options():
    settings = load_settings({**RABBITMQ, "REDIS_SOCKET_TIMEOUT": "3"})
    config = celery_config(settings)
    assert config["broker_url"] == RABBITMQ["BROKER_URL"]
    assert config["broker_transport_options"] == {"connect_timeout": 3.0}
    assert not REDIS_ONLY_OPTIONS & set(config["result_backend_transport_options"])


def test_the_lifecycle_settings_hold_for_both_brokers():
    for environ in (REDIS, RABBITMQ):
        config = celery_config(load_settings(environ))
        assert config["task_acks_late"] and config["task_reject_on_worker_lost"]
        assert config["worker_prefetch_multiplier"] == 1
        assert config["task_ignore_result"] is True


def test_workers_send_task_events_and_the_api_sends_task_sent_events_when_asked():
    default = celery_config(load_settings(REDIS))
    assert default["worker_send_task_events"] is True
    assert default["task_send_sent_event"] is False
    asked = celery_config(load_settings({**REDIS, "TASK_SENT_EVENTS": "true"}))
    assert asked["task_send_sent_event"] is True


def test_the_embedded_worker_consumes_every_queue():
    argv = worker_arguments(load_settings(REDIS))
    assert argv[argv.index("-Q") + 1].split(",") == list(QUEUES)


def test_a_pool_consumes_only_its_queues():
    argv = worker_arguments(load_settings({**REDIS, "WORKER_CONCURRENCY": "7"}), queues=["batch"])
    assert argv[argv.index("-Q") + 1] == "batch"
    assert argv[argv.index("--concurrency") + 1] == "7"


def test_the_redis_broker_pool_has_a_connection_for_every_task_in_flight():
    settings = load_settings({**REDIS, "WORKER_CONCURRENCY": "500"})
    options = celery_config(settings)["broker_transport_options"]
    assert options["max_connections"] > settings.worker_concurrency
