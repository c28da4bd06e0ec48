"""The shapes of what the service stores: a session embeds its rounds, a round its calls.

A session and its rounds are plain dicts (they travel as JSON and as MongoDB documents)::

    session = {
        "id": str, "owner": str | None, "title": str,
        "created_at": float, "updated_at": float,      # epoch seconds
        "members": [model_id, ...], "chairman": model_id,
        "status": <status of the last round>,
        "rounds": [round, ...],                        # round_no == index + 1
        "mode": "council" | "chat",
        "pinned": bool,                                # pinned sessions list first
        "deleted_at": float | None,                    # soft-deleted: hidden from every read
        "share_token": str | None,                     # set → readable by token, read-only
        "callback_url": str | None,                    # webhook told when a round ends
        "priority": "interactive" | "batch",
        "branched_from": {"session_id": str, "round_no": int} | None,
        "deliveries": [delivery, ...],                 # webhook delivery attempts, oldest first
        "min_answers": int | None,                     # quorums asked for; None: the defaults
        "min_ballots": int | None,
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
              "valid": bool, "raw": str | None, "error": str | None, "usage", "latency_ms",
              "repaired"?: bool}         # True: valid only after one corrective request
    synthesis = {"model", "content" | None, "error" | None, "usage", "latency_ms",
                 "stand_in_for"?: {"chairman", "error", "failed": [{"model", "error"}]} | None}
                                 # set when a stand-in (COUNCIL_CHAIRMAN_FALLBACKS) wrote it
    standing = {"member", "mean_rank" | None, "ballots": int, "disagreement" | None}
    usage = {"prompt_tokens": int, "completion_tokens": int, "total_tokens": int}
    delivery = {...}                 # one webhook attempt, as the webhook sender records it

Beside sessions the store keeps idempotency records and API keys (only hashes of the keys)::

    idempotency = {"fingerprint": str, "status": int | None,   # None: the request is in flight
                   "body": dict | None, "headers": {name: value}, "created_at": float}
    api_key = {"id": str, "name": str, "scope": "client" | "admin", "key_hash": str,
               "created_at": float, "revoked_at": float | None, "callback_url": str | None,
               "priority": "interactive" | "batch"}
"""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Mapping, Sequence

QUEUED = "queued"
RUNNING = "running"
COMPLETED = "completed"
DEGRADED = "degraded"
FAILED = "failed"
CANCELLED = "cancelled"

UNFINISHED = frozenset({QUEUED, RUNNING})
TERMINAL = frozenset({COMPLETED, DEGRADED, FAILED, CANCELLED})
STAGES = ("answers", "rankings", "synthesis")

COUNCIL = "council"
CHAT = "chat"
MODES = (COUNCIL, CHAT)
INTERACTIVE = "interactive"
BATCH = "batch"
PRIORITIES = (INTERACTIVE, BATCH)
SCOPES = ("client", "admin")

# What a session holds beyond its question and council, and what it holds when nothing was said.
SESSION_DEFAULTS: dict[str, object] = {
    "mode": COUNCIL,
    "pinned": False,
    "deleted_at": None,
    "share_token": None,
    "callback_url": None,
    "priority": INTERACTIVE,
    "branched_from": None,
    "deliveries": [],
    "min_answers": None,
    "min_ballots": None,
}

TITLE_CHARS = 80
IDEMPOTENCY_TTL_S = 24 * 3600  # how long an Idempotency-Key replays its first answer


def session_defaults() -> dict:
    """Return a fresh copy of ``SESSION_DEFAULTS``, safe to change."""
    return copy.deepcopy(SESSION_DEFAULTS)


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
    *,
    mode: str = COUNCIL,
    pinned: bool = False,
    deleted_at: float | None = None,
    share_token: str | None = None,
    callback_url: str | None = None,
    priority: str = INTERACTIVE,
    branched_from: Mapping[str, object] | None = None,
    deliveries: Sequence[dict] = (),
    min_answers: int | None = None,
    min_ballots: int | None = None,
) -> dict:
    """Return a new session whose first round is queued.

    Raises ``ValueError`` for a mode or priority that is not one of ``MODES`` or ``PRIORITIES``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if priority not in PRIORITIES:
        raise ValueError(f"priority must be one of {', '.join(PRIORITIES)}, not {priority!r}")
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
        "mode": mode,
        "pinned": pinned,
        "deleted_at": deleted_at,
        "share_token": share_token,
        "callback_url": callback_url,
        "priority": priority,
        "branched_from": None if branched_from is None else dict(branched_from),
        "deliveries": [dict(delivery) for delivery in deliveries],
        "min_answers": min_answers,
        "min_ballots": min_ballots,
    }


def title_from(question: str) -> str:
    """Return a one-line title taken from the start of a question."""
    line = " ".join(question.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


def last_round(session: dict) -> dict:
    """Return the session's newest round."""
    return session["rounds"][-1]
