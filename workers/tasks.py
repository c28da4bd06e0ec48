"""Thin task shells around the council's plain functions in ``shared``.

Tasks take ids, re-read everything from the store, and are idempotent: ``acks_late`` means a task
can be delivered twice, and the store's conditional claim makes the second delivery a no-op.
"""

from __future__ import annotations

from shared.council.run import execute_round
from shared.council.sweep import sweep_stale_rounds
from shared.queue import RUN_ROUND, SWEEP
from workers.app import app
from workers.runtime import current_runtime


@app.task(name=RUN_ROUND)
def run_round(session_id: str, round_no: int) -> str:
    """Conduct one council round to a terminal state."""
    runtime = current_runtime()
    return runtime.run(execute_round(runtime.council, session_id, round_no))


@app.task(name=SWEEP)
def sweep() -> int:
    """Re-enqueue rounds stuck in the queue or abandoned by a dead worker."""
    runtime = current_runtime()
    return sweep_stale_rounds(
        runtime.store, enqueue_round, runtime.settings.sweep_queued_after_s
    )


def enqueue_round(session_id: str, round_no: int) -> None:
    """Put a round on the queue by task name."""
    app.send_task(RUN_ROUND, args=[session_id, round_no])
