"""The shapes of what the service stores: a session embeds its rounds, a round its calls.

A session and its rounds are plain dicts (they travel as JSON and as MongoDB documents)::

    session = {
        "id": str, "owner": str | None, "title": str,
        "created_at": float, "updated_at": float,      # epoch seconds
        "members": [model_id, ...], "chairman": model_id,
        "status": <status of the last round>,
        "rounds": [round, ...],                        # round_no == index + 1
    }
    round = {
        "round_no": int, "question": str,
        "status": "queued" | "running" | "completed" | "degraded" | "failed" | "cancelled",
        "stage": None | "answers" | "rankings" | "synthesis",
        "attempts": int, "lease_until": float | None, "cancel_requested": bool,
        "created_at": float, "queued_at": float, "started_at": float | None,
        "finished_at": float | None,
        "answers": [answer, ...],    # one per member, checkpointed as each call returns
        "ballots": [ballot, ...],    # one per reviewer, checkpointed as each call returns
        "synthesis": synthesis | None,
        "aggregate": [standing, ...] | None,
        "notes": [str, ...],         # why a stage was skipped or a member lost
        "error": str | None,         # why a round failed
    }
    answer = {"member", "content" | None, "error" | None, "usage", "latency_ms"}
    ballot = {"reviewer", "labels": {label: member}, "ranking": [member] | None,
              "valid": bool, "raw": str | None, "error": str | None, "usage", "latency_ms"}
    synthesis = {"model", "content" | None, "error" | None, "usage", "latency_ms"}
    standing = {"member", "mean_rank" | None, "ballots": int, "disagreement" | None}
    usage = {"prompt_tokens": int, "completion_tokens": int, "total_tokens": int}
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence

QUEUED = "queued"
RUNNING = "running"
COMPLETED = "completed"
DEGRADED = "degraded"
FAILED = "failed"
CANCELLED = "cancelled"

UNFINISHED = frozenset({QUEUED, RUNNING})
TERMINAL = frozenset({COMPLETED, DEGRADED, FAILED, CANCELLED})
STAGES = ("answers", "rankings", "synthesis")

TITLE_CHARS = 80


def new_round(round_no: int, question: str, now: float | None = None) -> dict:
    """Return a queued round that no worker has touched yet."""
    now = time.time() if now is None else now
    return {
        "round_no": round_no,
        "question": question,
        "status": QUEUED,
        "stage": None,
        "attempts": 0,
        "lease_until": None,
        "cancel_requested": False,
        "created_at": now,
        "queued_at": now,
        "started_at": None,
        "finished_at": None,
        "answers": [],
        "ballots": [],
        "synthesis": None,
        "aggregate": None,
        "notes": [],
        "error": None,
    }


def new_session(
    question: str,
    members: Sequence[str],
    chairman: str,
    owner: str | None = None,
    now: float | None = None,
) -> dict:
    """Return a new session whose first round is queued."""
    now = time.time() if now is None else now
    return {
        "id": uuid.uuid4().hex,
        "owner": owner,
        "title": title_from(question),
        "created_at": now,
        "updated_at": now,
        "members": list(members),
        "chairman": chairman,
        "status": QUEUED,
        "rounds": [new_round(1, question, now)],
    }


def title_from(question: str) -> str:
    """Return a one-line title taken from the start of a question."""
    line = " ".join(question.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


def last_round(session: dict) -> dict:
    """Return the session's newest round."""
    return session["rounds"][-1]
