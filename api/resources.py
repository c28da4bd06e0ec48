"""The API process's clients: created lazily, once per process, after any fork."""

from __future__ import annotations

import os

import redis
from celery import Celery
from flask import Flask, current_app

from shared.queue import RUN_ROUND, make_celery
from shared.settings import Settings
from shared.store import Store, open_store

EXTENSION = "llm_council"


class Resources:
    """The store, the queue and Redis for one API process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pid = os.getpid()
        self._store: Store | None = None
        self._celery: Celery | None = None
        self._redis: redis.Redis | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = open_store(self.settings)
        return self._store

    @property
    def celery(self) -> Celery:
        if self._celery is None:
            self._celery = make_celery(self.settings)
        return self._celery

    @property
    def redis(self) -> redis.Redis:
        if self._redis is None:
            timeout = self.settings.redis_socket_timeout_s
            self._redis = redis.Redis.from_url(
                self.settings.effective_redis_url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
            )
        return self._redis

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
        if self._redis is not None:
            self._redis.close()


def init_app(app: Flask, settings: Settings) -> None:
    """Attach a fresh set of resources to the app."""
    app.extensions[EXTENSION] = Resources(settings)


def resources() -> Resources:
    """Return this process's resources, rebuilding them in a forked child."""
    current = current_app.extensions[EXTENSION]
    if current.pid != os.getpid():
        current = current_app.extensions[EXTENSION] = Resources(current.settings)
    return current


def get_store() -> Store:
    """Return the session store."""
    return resources().store


def get_settings() -> Settings:
    """Return the settings the app was built with."""
    return resources().settings


def enqueue_round(session_id: str, round_no: int) -> None:
    """Send a round to the workers by task name (ids only, never the question)."""
    resources().celery.send_task(RUN_ROUND, args=[session_id, round_no], retry=False)
