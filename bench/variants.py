"""A worker variant for the benchmark only: every round on its own event loop and clients.

``celery -A bench.variants worker --pool threads`` runs the same round engine as
``workers.app``, but each task runs ``asyncio.run`` in its pool thread with an HTTP client,
provider and Redis clients of its own, as a thread (or greenlet) per task with per-task clients
would. The store, the event log and the threads that make store calls are the process's, as
in ``workers.runtime`` (a thread pool per loop let hundreds of threads queue on SQLite's write
lock until some gave up: "database is locked").
"""

from __future__ import annotations

import asyncio
import dataclasses
from concurrent.futures import ThreadPoolExecutor

from shared.council.run import execute_round
from shared.provider.client import build_http_client
from shared.provider.resilient import build_provider
from shared.queue import RUN_ROUND, SWEEP
from workers import tasks
from workers.app import CouncilCelery
from workers.runtime import WorkerRuntime, current_runtime

app = CouncilCelery("llm_council")


class SharedExecutor(ThreadPoolExecutor):
    """The process's store threads, which no round's loop may shut down when it closes."""

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        pass


_store_threads: SharedExecutor | None = None


@app.task(name=RUN_ROUND)
def run_round(session_id: str, round_no: int) -> str:
    """Conduct one round on a loop of its own, with clients of its own."""
    global _store_threads
    runtime = current_runtime()
    if _store_threads is None:
        _store_threads = SharedExecutor(runtime.settings.effective_store_pool_size, "store")
    loop = asyncio.new_event_loop()
    loop.set_default_executor(_store_threads)
    try:
        return loop.run_until_complete(_own_loop_round(runtime, session_id, round_no))
    finally:
        loop.close()


@app.task(name=SWEEP)
def sweep() -> int:
    """Re-enqueue stuck rounds, as ``workers.tasks.sweep`` does."""
    return tasks.sweep.run()


async def _own_loop_round(runtime: WorkerRuntime, session_id: str, round_no: int) -> str:
    async with build_http_client(runtime.settings) as http:
        provider = build_provider(runtime.settings, http)
        try:
            council = dataclasses.replace(runtime.council, provider=provider)
            return await execute_round(council, session_id, round_no)
        finally:
            await provider.aclose()
