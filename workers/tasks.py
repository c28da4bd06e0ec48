"""Thin task shells around the council's plain functions in ``shared``.

Tasks take ids, re-read everything from the store, and are idempotent: ``acks_late`` means a task
can be delivered twice, and the store's conditional claim makes the second delivery a no-op.
"""

from __future__ import annotations

import logging
import time

from kombu.exceptions import OperationalError as BrokerError

from shared import webhooks
from shared.council.metrics import count_round, final_status
from shared.council.run import execute_round
from shared.council.sweep import purge_expired, sweep_stale_rounds
from shared.logs import log_ids
from shared.queue import (
    DELIVER_WEBHOOK,
    INTERACTIVE_QUEUE,
    RUN_ROUND,
    SWEEP,
    WEBHOOKS_QUEUE,
    message_headers,
    queue_for,
)
from shared.records import IDEMPOTENCY_TTL_S
from shared.store.base import EXHAUSTED
from workers.app import app
from workers.runtime import current_runtime

log = logging.getLogger(__name__)


@app.task(name=RUN_ROUND)
def run_round(session_id: str, round_no: int) -> str:
    """Conduct one council round to a terminal state."""
    runtime = current_runtime()
    started = time.monotonic()
    outcome = runtime.run(execute_round(runtime.council, session_id, round_no))
    if final_status(outcome) is not None:  # one read of the ended session serves both
        session = runtime.store.get_session(session_id) or {}
        count_round(session, outcome, time.monotonic() - started)
        announce_end(session_id, round_no, outcome, session)
    return outcome


@app.task(name=DELIVER_WEBHOOK, bind=True, max_retries=None)
def deliver_webhook(self, session_id: str, round_no: int) -> str:
    """Make the next attempt to deliver a round's webhook; try again later if it may succeed.

    The attempts cap lives in the store (``WEBHOOK_MAX_ATTEMPTS``), hence no Celery cap here.
    """
    runtime = current_runtime()
    delivery = webhooks.deliver_webhook(
        runtime.store, runtime.webhook_http, runtime.settings, session_id, round_no)
    if delivery.retry_in_s is not None:
        raise self.retry(countdown=delivery.retry_in_s)
    return delivery.outcome


@app.task(name=SWEEP)
def sweep() -> int:
    """Re-enqueue rounds stuck in the queue or abandoned by a dead worker."""
    runtime = current_runtime()
    settings = runtime.settings
    purge_expired(runtime.store, settings.session_retention_s, IDEMPOTENCY_TTL_S)
    return sweep_stale_rounds(
        runtime.store, enqueue_round, settings.sweep_queued_after_s, settings.round_lease_s
    )


def announce_end(session_id: str, round_no: int, outcome: str, session: dict) -> None:
    """Once a round ended here, enqueue its webhook (when the session has a callback URL).

    ``session`` is the session as stored after the round ended. A round failed by its claim
    (attempts ran out) had no engine to say so: say it here.
    """
    status = final_status(outcome)
    if status is None:
        return
    if outcome == EXHAUSTED:
        current_runtime().events(session_id, round_no, "finished", {"status": status})
    if not session.get("callback_url"):
        return
    try:
        app.send_task(DELIVER_WEBHOOK, args=[session_id, round_no], queue=WEBHOOKS_QUEUE,
                      headers=message_headers(log_ids().get("request_id")))
    except BrokerError as error:
        log.error("webhook not enqueued", extra={
            "session_id": session_id, "round_no": round_no, "error": str(error)})


def enqueue_round(session_id: str, round_no: int) -> None:
    """Put a round back on its session's queue (by priority) by task name."""
    session = current_runtime().store.get_session(session_id) or {}
    queue = queue_for(session.get("priority", INTERACTIVE_QUEUE))
    app.send_task(RUN_ROUND, args=[session_id, round_no], queue=queue,
                  headers=message_headers(log_ids().get("request_id")))
