"""The round engine's metrics, taken from outside it.

Stage durations come through the engine's event seam (``Council.on_event``): a stage lasts from
its ``stage`` event to the next one, or to ``finished``. Rounds are counted by the worker's task
once ``execute_round`` returns, by the session's mode and the round's final status, with the time
from the claim to the end.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from shared import records
from shared.metrics import COUNCIL_ROUND_DURATION, COUNCIL_ROUNDS, COUNCIL_STAGE_DURATION
from shared.store.base import EXHAUSTED

log = logging.getLogger(__name__)

Listener = Callable[[str, int, str, dict], None]

MAX_OPEN_STAGES = 100_000  # rounds cut off without a ``finished`` event leave their stage open


class StageTimer:
    """An ``on_event`` listener that observes how long each stage of a round took."""

    def __init__(self) -> None:
        self._open: dict[tuple[str, int], tuple[str, float]] = {}

    def __call__(self, session_id: str, round_no: int, kind: str, data: dict) -> None:
        key = (session_id, round_no)
        if kind == "stage":
            self._close(key)
            if len(self._open) >= MAX_OPEN_STAGES:
                self._open.clear()
            self._open[key] = (str(data.get("stage")), time.monotonic())
        elif kind == "finished":
            self._close(key)

    def _close(self, key: tuple[str, int]) -> None:
        opened = self._open.pop(key, None)
        if opened is not None and opened[0] in records.STAGES:
            COUNCIL_STAGE_DURATION.labels(stage=opened[0]).observe(time.monotonic() - opened[1])


def final_status(outcome: str) -> str | None:
    """Return the terminal status a round reached in this worker (``None``: it ended nothing).

    ``outcome`` comes from ``execute_round``; a round whose attempts ran out was marked failed
    by its claim.
    """
    status = records.FAILED if outcome == EXHAUSTED else outcome
    return status if status in records.TERMINAL else None


def count_round(session: dict, outcome: str, elapsed_s: float) -> None:
    """Count a round that ended in this worker, given its session as stored after the end.

    A round whose attempts ran out is counted, not timed. Outcomes that end nothing (not
    claimed, lease lost) are not counted.
    """
    status = final_status(outcome)
    if status is None:
        return
    COUNCIL_ROUNDS.labels(mode=session.get("mode", records.COUNCIL), status=status).inc()
    if outcome != EXHAUSTED:
        COUNCIL_ROUND_DURATION.observe(elapsed_s)


def all_of(*listeners: Listener) -> Listener:
    """Return one ``on_event`` listener that calls each of ``listeners``, in order.

    A listener that fails is logged and skipped: metrics and progress events never stop a round.
    """

    def notify(session_id: str, round_no: int, kind: str, data: dict) -> None:
        for listener in listeners:
            try:
                listener(session_id, round_no, kind, data)
            except Exception:  # noqa: BLE001 - see the docstring
                log.exception("a round event listener failed", extra={
                    "session_id": session_id, "round_no": round_no})

    return notify
