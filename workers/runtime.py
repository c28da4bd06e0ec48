"""What one worker process owns: an event loop, a pooled provider client and a store.

Celery's thread pool hands each round to the process's single asyncio loop, so hundreds of rounds
wait on providers at once while one ``httpx.AsyncClient`` keeps its connections warm. Everything
here is created lazily, in the process that uses it, after any fork.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from celery.signals import worker_shutdown

from shared.council.run import Council
from shared.provider.client import ProviderClient, build_http_client
from shared.settings import Settings, load_settings
from shared.store import open_store

T = TypeVar("T")

STORE_THREADS = 32


class WorkerRuntime:
    """A background event loop and the clients that live on it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = open_store(settings)
        self.loop = asyncio.new_event_loop()
        self.loop.set_default_executor(ThreadPoolExecutor(STORE_THREADS, "store"))
        self._thread = threading.Thread(target=self.loop.run_forever, name="council-loop")
        self._thread.daemon = True
        self._thread.start()
        self.http = self.run(_build_http_client(settings))
        provider = ProviderClient(
            self.http, settings.provider_base_url, settings.openrouter_api_key,
            settings.provider_timeout_s,
        )
        self.council = Council(
            store=self.store,
            provider=provider,
            roster=settings.roster,
            lease_s=settings.round_lease_s,
            max_attempts=settings.round_max_attempts,
        )

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the process loop and wait for its result in this thread."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def close(self) -> None:
        """Close the provider client, stop the loop and release the store."""
        self.run(self.http.aclose())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        self.store.close()


async def _build_http_client(settings: Settings):
    # Built on the loop that will use it: httpx binds its pool to the running loop.
    return build_http_client(settings)


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
        return _runtime


@worker_shutdown.connect
def _close_runtime(**_: object) -> None:
    if _runtime is not None and _runtime_pid == os.getpid():
        _runtime.close()
