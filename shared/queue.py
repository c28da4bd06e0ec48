"""The job queue's contract: task names, queues, routes and the Celery configuration both sides use.

The API enqueues by task name and never imports ``workers``; the workers register tasks under
the same names. Task arguments are ids only: prompts and answers never travel through the broker.

Queues, and the worker pools that consume them (``python -m workers -Q <queues>``):

- ``interactive``: rounds of normal submissions, and the sweeper;
- ``batch``: rounds of low-priority submissions, so a flood of them never delays a person waiting;
- ``webhooks``: webhook deliveries, kept apart so a slow receiver never holds up a round.

The broker is Redis (``redis://``, the default) or RabbitMQ (``amqp://``); Redis still holds the
shared state either way.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import amqp.exceptions
from celery import Celery

from shared.settings import Settings

RUN_ROUND = "workers.tasks.run_round"
SWEEP = "workers.tasks.sweep"
DELIVER_WEBHOOK = "workers.tasks.deliver_webhook"

INTERACTIVE_QUEUE = "interactive"
BATCH_QUEUE = "batch"
WEBHOOKS_QUEUE = "webhooks"
QUEUES = (INTERACTIVE_QUEUE, BATCH_QUEUE, WEBHOOKS_QUEUE)

# A submission's priority names the queue its rounds wait in.
PRIORITIES = (INTERACTIVE_QUEUE, BATCH_QUEUE)

# Redis forgets nothing it was told to deliver, but without an ack it redelivers only after the
# visibility timeout; it must outlast the longest round or a slow round would run twice.
VISIBILITY_MARGIN_S = 300
# Broker connections beyond one per task in flight: the consumer, events, the pidbox.
BROKER_SPARE_CONNECTIONS = 10

AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")
REDIS_TRANSPORT = "shared.redis_broker:Transport"

# Headers a task message carries besides its arguments: when it was sent (the queue's oldest
# message tells how long work waits) and the id of the request that caused it (for the logs).
ENQUEUED_AT = "enqueued_at"
REQUEST_ID = "request_id"


def queue_for(priority: str) -> str:
    """Return the queue that rounds of a submission with ``priority`` wait in."""
    if priority not in PRIORITIES:
        raise ValueError(f"unknown priority {priority!r}; expected one of {', '.join(PRIORITIES)}")
    return priority


def message_headers(request_id: str | None = None) -> dict:
    """Return the headers to send a task message with (``send_task(..., headers=...)``)."""
    headers: dict = {ENQUEUED_AT: time.time()}
    if request_id:
        headers[REQUEST_ID] = request_id
    return headers


def is_amqp(broker_url: str) -> bool:
    """Tell whether ``broker_url`` names an AMQP broker (RabbitMQ) rather than Redis."""
    return broker_url.partition("://")[0].lower() in AMQP_SCHEMES


def broker_transport(broker_url: str) -> str | None:
    """Return the Kombu transport for ``broker_url``: ours for plain ``redis://``, else the URL's.

    ``rediss://``, Sentinel and the embedded socket keep Kombu's own (``shared.redis_broker``).
    """
    return REDIS_TRANSPORT if broker_url.partition("://")[0].lower() == "redis" else None


def broker_transport_options(settings: Settings) -> dict:
    """Return transport options for the configured broker: each transport knows only its own."""
    timeout = settings.redis_socket_timeout_s
    if is_amqp(settings.effective_broker_url):
        # py-amqp takes these as keyword arguments; Redis' visibility timeout means nothing
        # here: RabbitMQ redelivers an unacknowledged message as soon as its consumer is gone.
        # RabbitMQ instead closes the channel of a consumer that holds a delivery unacknowledged
        # longer than its ``consumer_timeout`` (30 min by default): with late acks,
        # ROUND_TIME_LIMIT must stay below it (README, "A second broker").
        return {"connect_timeout": timeout}
    return {
        "visibility_timeout": settings.round_time_limit_s + VISIBILITY_MARGIN_S,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        # Kombu's Redis pool holds 10 connections unless told otherwise and fails (it does not
        # wait) when they are all busy: every pool thread acks its own task, so a worker with
        # hundreds of rounds in flight lost acks ("Couldn't ack ... MaxConnectionsError").
        "max_connections": settings.worker_concurrency + BROKER_SPARE_CONNECTIONS,
    }


def celery_config(settings: Settings) -> dict:
    """Return the Celery configuration that DESIGN.md's run lifecycle needs."""
    transport = broker_transport_options(settings)
    return {
        "broker_url": settings.effective_broker_url,
        "broker_transport": broker_transport(settings.effective_broker_url),
        "broker_transport_options": transport,
        "result_backend_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_time_limit": settings.round_time_limit_s,
        "task_soft_time_limit": max(1, settings.round_time_limit_s - 30),
        "task_default_queue": INTERACTIVE_QUEUE,
        "task_routes": {
            RUN_ROUND: {"queue": INTERACTIVE_QUEUE},
            SWEEP: {"queue": INTERACTIVE_QUEUE},
            DELIVER_WEBHOOK: {"queue": WEBHOOKS_QUEUE},
        },
        "task_serializer": "json",
        "accept_content": ["json"],
        "worker_send_task_events": True,
        # A task-sent event is a second publish per submit, as costly as the task's own; the
        # queue itself shows waiting rounds (api/admin.py), so Flower's "sent" state is opt-in.
        "task_send_sent_event": settings.task_sent_events,
        "worker_hijack_root_logger": False,
        "worker_concurrency": settings.worker_concurrency,
        "beat_schedule": {
            "sweep-stale-rounds": {"task": SWEEP, "schedule": settings.sweep_interval_s},
        },
    }


def queue_depths(app: Celery, queues: Sequence[str] = QUEUES) -> dict[str, int]:
    """Return how many tasks wait in each queue (running ones not counted), on either broker."""
    depths = {}
    with app.connection_for_read() as connection:
        for queue in queues:
            channel = connection.channel()
            try:
                depths[queue] = channel.queue_declare(queue=queue, passive=True).message_count
            except amqp.exceptions.ChannelError:
                depths[queue] = 0  # never declared, or emptied and gone: nothing waits there
            finally:
                channel.close()
    return depths


class QueueGauge:
    """Read one queue's depth at a time, over a Redis channel kept open between reads.

    ``queue_depths`` opens a channel per call, about 3 ms of CPU with Redis; the API asks once a
    second per process and queue (``api.admission``). Reads are serialised, and the channel is
    opened again after a failure. RabbitMQ closes a channel whose passive declare names a queue
    that does not exist, so there each read opens its own, as ``queue_depths`` does.
    """

    def __init__(self, app: Celery) -> None:
        self._app = app
        self._lock = threading.Lock()
        self._connection = None
        self._channel = None

    def depth(self, queue: str) -> int:
        """Return how many tasks wait in ``queue`` (0 when it was never declared)."""
        if is_amqp(self._app.conf.broker_url):
            return queue_depths(self._app, [queue])[queue]
        with self._lock:
            try:
                channel = self._open()
                return channel.queue_declare(queue=queue, passive=True).message_count
            except amqp.exceptions.ChannelError:
                return 0  # emptied and gone (Redis drops an empty list): nothing waits there
            except Exception:
                self._drop()
                raise

    def close(self) -> None:
        """Close the kept channel and its connection."""
        with self._lock:
            self._drop()

    def _open(self):
        if self._channel is None:
            self._connection = self._app.connection_for_read()
            self._channel = self._connection.channel()
        return self._channel

    def _drop(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            connection.close()  # and its channel


def make_celery(settings: Settings, name: str = "llm_council") -> Celery:
    """Return a Celery app configured for ``settings`` (used by the API to enqueue)."""
    app = Celery(name, set_as_current=False)
    app.conf.update(celery_config(settings))
    return app
