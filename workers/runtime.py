"""What one worker process owns: an event loop, a pooled provider client and a store.

Celery's thread pool hands each round to the process's single asyncio loop, so hundreds of rounds
wait on providers at once while one ``httpx.AsyncClient`` keeps its connections warm. Every store
call runs on the loop's ``STORE_POOL_SIZE`` store threads, whichever thread makes it. Everything
here is created lazily, in the process that uses it, after any fork.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import threading
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from celery.signals import worker_shutdown

from shared.council.metrics import StageTimer, all_of
from shared.council.policy import RoundPolicy
from shared.council.run import Council
from shared.event_loops import loop_kind, new_event_loop
from shared.events import EventPublisher, open_event_log
from shared.heap import tune_collector
from shared.logs import carrying_log_ids, log_ids
from shared.provider.client import build_http_client
from shared.provider.resilient import build_provider
from shared.redis_client import connect_redis
from shared.settings import Settings, load_settings
from shared.store.base import Store
from shared.store.cached import open_cached_store
from shared.webhooks import webhook_client

T = TypeVar("T")

log = logging.getLogger(__name__)


class WorkerRuntime:
    """A background event loop and the clients that live on it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        _warn_if_pool_too_small(settings)
        self.redis = connect_redis(settings)
        store = open_cached_store(settings, self.redis)
        store_threads = ThreadPoolExecutor(settings.effective_store_pool_size, "store")
        self.store = StoreOnThreads(store, store_threads)  # for Celery's threads
        self.loop = new_event_loop(settings.worker_event_loop)
        self.loop.set_default_executor(store_threads)  # the rounds' ``asyncio.to_thread``
        self._thread = threading.Thread(target=self.loop.run_forever, name="council-loop")
        self._thread.daemon = True
        self._thread.start()
        self.http = self.run(_build_http_client(settings))
        self.provider = build_provider(settings, self.http)
        self.events = EventPublisher(open_event_log(settings))  # never blocks the loop
        self.webhook_http = webhook_client(settings)
        self.council = Council(
            store=store,  # already called on the store threads, through ``asyncio.to_thread``
            provider=self.provider,
            roster=settings.roster,
            lease_s=settings.round_lease_s,
            max_attempts=settings.round_max_attempts,
            policy=RoundPolicy.from_settings(settings),
            on_event=all_of(self.events, StageTimer()),
        )

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the process loop and wait for its result in this thread.

        This thread's log ids (the task's) are bound inside the coroutine, so every line the
        round logs on the loop carries them.
        """
        carried = carrying_log_ids(log_ids(), coroutine)
        return asyncio.run_coroutine_threadsafe(carried, self.loop).result()

    def close(self) -> None:
        """Close the provider client, stop the loop and release the store."""
        self.run(self.provider.aclose())
        self.run(self.http.aclose())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        self.events.close()
        self.webhook_http.close()
        self.store.close()


class StoreOnThreads:
    """Run each call of a store on the process's store threads and wait for its result.

    The SQLite store gives every thread that calls it a connection of its own, and a connection
    holds about 180 KiB once it has read a session. Celery's pool threads, one per round in
    flight, read the session when a round ends: at 500 in flight that was 500 connections and
    about 90 MiB of a worker's 250 MiB (bench/RESULTS.md, "Memory at 500 in flight"). Through
    here they share the ``STORE_POOL_SIZE`` connections of the rounds' store calls, whatever
    ``WORKER_CONCURRENCY`` is.
    """

    def __init__(self, store: Store, threads: ThreadPoolExecutor) -> None:
        self._store = store
        self._threads = threads

    def __getattr__(self, name: str):
        attribute = getattr(self._store, name)
        if not callable(attribute):
            return attribute

        def call(*args, **kwargs):
            context = contextvars.copy_context()  # the caller's log ids
            return self._threads.submit(context.run, attribute, *args, **kwargs).result()

        return call


async def _build_http_client(settings: Settings):
    # Built on the loop that will use it: httpx binds its pool to the running loop.
    return build_http_client(settings)


def _warn_if_pool_too_small(settings: Settings) -> None:
    """Warn when rounds in flight may ask for more provider connections than the pool holds.

    Calls beyond the pool wait for a connection, and one that waits longer than the pool
    timeout fails as ``PoolExhausted``: with slow models that loses members.
    """
    calls = settings.worker_concurrency * len(settings.roster.members)
    if settings.provider_max_connections < calls:
        log.warning(
            "PROVIDER_MAX_CONNECTIONS is below WORKER_CONCURRENCY x council members: calls will"
            " wait for a connection",
            extra={"provider_max_connections": settings.provider_max_connections,
                   "calls_in_flight": calls},
        )


_runtime: WorkerRuntime | None = None
_runtime_pid: int | None = None
_lock = threading.Lock()


def current_runtime() -> WorkerRuntime:
    """Return this process's runtime, creating it on first use (and again after a fork)."""
    global _runtime, _runtime_pid
    with _lock:
        if _runtime is None or _runtime_pid != os.getpid():
            _runtime = WorkerRuntime(load_settings())
            _runtime_pid = os.getpid()
            tune_collector()  # the runtime lives as long as the process
            log.info("worker runtime ready", extra={"event_loop": loop_kind(_runtime.loop)})
        return _runtime


@worker_shutdown.connect
def _close_runtime(**_: object) -> None:
    if _runtime is not None and _runtime_pid == os.getpid():
        _runtime.close()
