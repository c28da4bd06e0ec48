"""How much work waits in each queue, and for how long the oldest message has waited.

Depths come from a passive declare (``shared.queue.queue_depths``), which both brokers answer.
On Redis a queue is a list whose tail is its oldest message, and that message's
``enqueued_at`` header (``shared.queue.message_headers``) says when it was sent; RabbitMQ lets
no one peek at a message without taking it, so there the age is unknown (``None``). Only
messages waiting for a worker count: one a worker holds shows in ``/v1/admin/tasks``.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from celery import Celery
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from shared.metrics import CELERY_QUEUE_LENGTH
from shared.queue import ENQUEUED_AT, QUEUES, is_amqp, queue_depths
from shared.settings import Settings

log = logging.getLogger(__name__)

SCAN_LIMIT = 1000  # messages read per queue when looking one up by task id


@dataclass(frozen=True)
class Backlog:
    """One queue's waiting messages."""

    queue: str
    depth: int
    oldest_age_s: float | None


@dataclass(frozen=True)
class WaitingTask:
    """A task message still in a queue."""

    task_id: str
    name: str
    args: list
    queue: str
    enqueued_at: float | None


class BrokerQueues:
    """Read the broker's queues through Celery's connection, whichever broker it is."""

    def __init__(self, settings: Settings, celery: Celery) -> None:
        self.amqp = is_amqp(settings.effective_broker_url)
        self._celery = celery

    def backlogs(self, queues: tuple[str, ...] = QUEUES) -> list[Backlog]:
        """Return every queue's depth and the age of its oldest message."""
        depths = queue_depths(self._celery, queues)
        ages = {} if self.amqp else self._oldest_ages(queues)
        return [Backlog(queue, depths[queue], ages.get(queue)) for queue in queues]

    def find(self, task_id: str, queues: tuple[str, ...] = QUEUES) -> WaitingTask | None:
        """Return a task still waiting in a queue (Redis only; ``None`` when not found)."""
        if self.amqp:
            return None
        with self._celery.connection_for_read() as connection:
            client = connection.default_channel.client
            for queue in queues:
                for raw in client.lrange(queue, -SCAN_LIMIT, -1):
                    message = _parse(raw) or {}
                    headers = message.get("headers") or {}
                    if headers.get("id") == task_id:
                        return WaitingTask(task_id, headers.get("task", ""), _args(message),
                                           queue, _number(headers.get(ENQUEUED_AT)))
        return None

    def _oldest_ages(self, queues: tuple[str, ...]) -> dict[str, float | None]:
        # Messages are pushed at the head and taken from the tail: the tail is the oldest.
        with self._celery.connection_for_read() as connection:
            client = connection.default_channel.client
            with client.pipeline(transaction=False) as pipe:
                for queue in queues:
                    pipe.lindex(queue, -1)
                tails = pipe.execute()
        now = time.time()
        return {queue: _age(tail, now) for queue, tail in zip(queues, tails, strict=True)}


class QueueLengthCollector(Collector):
    """``celery_queue_length{queue}``, read from the broker at every scrape."""

    def __init__(self, read: Callable[[], list[Backlog]]) -> None:
        self._read = read

    def describe(self) -> list[GaugeMetricFamily]:
        return [self._family()]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = self._family()
        try:
            backlogs = self._read()
        except Exception as error:  # noqa: BLE001 - a scrape must not fail on the broker
            log.warning("queue lengths unavailable", extra={"error": str(error)})
            return
        for backlog in backlogs:
            family.add_metric([backlog.queue], backlog.depth)
        yield family

    @staticmethod
    def _family() -> GaugeMetricFamily:
        [described] = CELERY_QUEUE_LENGTH.describe()
        return GaugeMetricFamily(described.name, described.documentation, labels=["queue"])


def _parse(raw: bytes | str | None) -> dict | None:
    if raw is None:
        return None
    try:
        message = json.loads(raw)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


def _age(raw: bytes | str | None, now: float) -> float | None:
    headers = (_parse(raw) or {}).get("headers") or {}
    enqueued_at = _number(headers.get(ENQUEUED_AT))
    return None if enqueued_at is None else round(max(0.0, now - enqueued_at), 3)


def _args(message: dict) -> list:
    """Return a JSON task message's positional arguments (Celery's body: [args, kwargs, embed])."""
    body = message.get("body")
    try:
        if (message.get("properties") or {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        decoded = json.loads(body)
    except (TypeError, ValueError, binascii.Error):
        return []
    args = decoded[0] if isinstance(decoded, list) and decoded else None
    return args if isinstance(args, list) else []


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
