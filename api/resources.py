"""The API process's clients: created lazily, once per process, after any fork."""

from __future__ import annotations

import logging
import os

import redis
from celery import Celery
from flask import Flask, current_app

from api.round_endings import RoundEndings
from shared import keys
from shared.cache import Cache
from shared.events import EventLog, open_event_log
from shared.logs import log_ids
from shared.queue import (
    INTERACTIVE_QUEUE,
    RUN_ROUND,
    QueueGauge,
    make_celery,
    message_headers,
)
from shared.redis_client import connect_redis
from shared.settings import Settings
from shared.store import Store
from shared.store.cached import CacheDroppingStore, open_cached_store

EXTENSION = "llm_council"

log = logging.getLogger(__name__)


class Resources:
    """The store, the queue and Redis for one API process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pid = os.getpid()
        self._store: CacheDroppingStore | None = None
        self._celery: Celery | None = None
        self._queue_gauge: QueueGauge | None = None
        self._redis: redis.Redis | None = None
        self._limits = None
        self._events: EventLog | None = None
        self._round_endings: RoundEndings | None = None

    @property
    def store(self) -> CacheDroppingStore:
        if self._store is None:
            self._store = open_cached_store(self.settings, self.redis)
            if self.settings.api_key:
                keys.seed_configured_key(self._store, self.settings.api_key)
        return self._store

    @property
    def cache(self) -> Cache:
        return self.store.cache

    @property
    def limits(self):
        if self._limits is None:
            from api.limits import InboundLimits

            self._limits = InboundLimits(self.redis if self.settings.redis_enabled else None)
        return self._limits

    @property
    def celery(self) -> Celery:
        if self._celery is None:
            self._celery = make_celery(self.settings)
        return self._celery

    @property
    def queue_gauge(self) -> QueueGauge:
        """Return the reader of queue depths (its channel stays open between reads)."""
        if self._queue_gauge is None:
            self._queue_gauge = QueueGauge(self.celery)
        return self._queue_gauge

    @property
    def events(self) -> EventLog:
        """Return the event log SSE streams read from (its client outwaits a blocking read)."""
        if self._events is None:
            self._events = open_event_log(self.settings, blocking=True)
        return self._events

    @property
    def round_endings(self) -> RoundEndings:
        """Return the waiters on round endings (its listener starts with the first waiter)."""
        if self._round_endings is None:
            self._round_endings = RoundEndings(self.redis)
        return self._round_endings

    @property
    def redis(self) -> redis.Redis:
        if self._redis is None:
            self._redis = connect_redis(self.settings)
        return self._redis

    def warm(self) -> dict[str, str]:
        """Open the connections and run the lazy imports that the first requests would.

        A process that starts cold makes its first requests pay for them (~40 ms of CPU each,
        and the concurrent ones wait on import locks): bench/RESULTS.md measured 200-330 ms
        submits in a new API process. Return what could not be warmed, by name; nothing is
        raised, since a request that needs it will report the failure itself.
        """
        steps = {
            "store": lambda: self.store.ping(),
            "redis": lambda: self.redis.ping(),
            "limits": lambda: self.limits,
            "broker": lambda: self.queue_gauge.depth(INTERACTIVE_QUEUE),
            "celery": lambda: self.celery.backend,  # send_task resolves it
        }
        failed = {}
        for name, step in steps.items():
            try:
                step()
            except Exception as error:  # noqa: BLE001 - warming is best effort, see above
                failed[name] = f"{type(error).__name__}: {error}"
        if failed:
            log.warning("some resources could not be warmed", extra={"failed": failed})
        return failed

    def close(self) -> None:
        if self._round_endings is not None:
            self._round_endings.stop()
        if self._queue_gauge is not None:
            self._queue_gauge.close()
        if self._store is not None:
            self._store.close()
        if self._redis is not None:
            self._redis.close()
        if self._events is not None:
            self._events.client.close()


def init_app(app: Flask, settings: Settings) -> None:
    """Attach a fresh set of resources to the app."""
    app.extensions[EXTENSION] = Resources(settings)


def warm(app: Flask) -> dict[str, str]:
    """Warm a new process's resources before it serves (see ``Resources.warm``)."""
    with app.app_context():
        return resources().warm()


def resources() -> Resources:
    """Return this process's resources, rebuilding them in a forked child."""
    current = current_app.extensions[EXTENSION]
    if current.pid != os.getpid():
        current = current_app.extensions[EXTENSION] = Resources(current.settings)
    return current


def get_store() -> Store:
    """Return the session store."""
    return resources().store


def get_cache() -> Cache:
    """Return the shared read cache."""
    return resources().cache


def get_settings() -> Settings:
    """Return the settings the app was built with."""
    return resources().settings


def enqueue_round(session_id: str, round_no: int, queue: str) -> str:
    """Send a round to the workers by task name (ids only, never the question); return its id.

    The message's headers carry the request's id into the worker's logs.
    """
    result = resources().celery.send_task(
        RUN_ROUND, args=[session_id, round_no], queue=queue, retry=False,
        headers=message_headers(log_ids().get("request_id")),
    )
    return result.id
