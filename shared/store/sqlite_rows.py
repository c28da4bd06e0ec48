"""Turn the SQLite store's rows into the ``shared.records`` shapes and back."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable

from shared.records import SESSION_DEFAULTS
from shared.store.sqlite_schema import ROUND_COLUMNS

IN_SESSIONS = "session_id IN (SELECT value FROM json_each(?))"


def session_params(session: dict) -> dict:
    """Return the ``sessions`` row of a session (fields it lacks take their defaults)."""
    fields = {**SESSION_DEFAULTS, **session}
    return {
        "id": fields["id"],
        "owner": fields["owner"],
        "title": fields["title"],
        "created_at": fields["created_at"],
        "updated_at": fields["updated_at"],
        "members": json.dumps(fields["members"]),
        "chairman": fields["chairman"],
        "mode": fields["mode"],
        "pinned": int(bool(fields["pinned"])),
        "deleted_at": fields["deleted_at"],
        "share_token": fields["share_token"],
        "callback_url": fields["callback_url"],
        "priority": fields["priority"],
        "branched_from": dumps(fields["branched_from"]),
        "deliveries": json.dumps(fields["deliveries"]),
        "min_answers": fields["min_answers"],
        "min_ballots": fields["min_ballots"],
    }


def round_params(session_id: str, round_: dict) -> dict:
    """Return the ``rounds`` row of a round."""
    params = {column: round_.get(column) for column in ROUND_COLUMNS}
    params.update(
        session_id=session_id,
        cancel_requested=int(bool(round_.get("cancel_requested"))),
        aggregate=dumps(round_.get("aggregate")),
        notes=json.dumps(round_.get("notes") or []),
    )
    return params


def insert_calls(conn: sqlite3.Connection, session_id: str, round_: dict) -> None:
    """Store the calls a new round already carries (a branched copy keeps its answers)."""
    calls = [("answer", answer["member"], answer) for answer in round_.get("answers", ())]
    calls += [("ballot", ballot["reviewer"], ballot) for ballot in round_.get("ballots", ())]
    if round_.get("synthesis") is not None:
        calls.append(("synthesis", "", round_["synthesis"]))
    conn.executemany(
        "INSERT OR IGNORE INTO round_calls (session_id, round_no, kind, member, payload)"
        " VALUES (?, ?, ?, ?, ?)",
        [(session_id, round_["round_no"], kind, member, json.dumps(payload))
         for kind, member, payload in calls],
    )


def assemble(conn: sqlite3.Connection, sessions: Iterable[sqlite3.Row]) -> list[dict]:
    """Build session dicts from their rows with two more queries, however many there are."""
    sessions = list(sessions)
    if not sessions:
        return []
    ids = json.dumps([row["id"] for row in sessions])
    rounds: dict[str, list[dict]] = {row["id"]: [] for row in sessions}
    calls = _calls_by_round(conn.execute(
        f"SELECT * FROM round_calls WHERE {IN_SESSIONS} ORDER BY rowid", (ids,)
    ))
    for row in conn.execute(
        f"SELECT * FROM rounds WHERE {IN_SESSIONS} ORDER BY round_no", (ids,)
    ):
        key = (row["session_id"], row["round_no"])
        rounds[row["session_id"]].append(_round_from(row, calls.get(key, {})))
    return [_session_from(row, rounds[row["id"]]) for row in sessions]


def assemble_round(conn: sqlite3.Connection, session_id: str, round_no: int) -> dict:
    """Build one round dict from its row and its calls."""
    key = (session_id, round_no)
    row = conn.execute(
        "SELECT * FROM rounds WHERE session_id = ? AND round_no = ?", key
    ).fetchone()
    calls = _calls_by_round(conn.execute(
        "SELECT * FROM round_calls WHERE session_id = ? AND round_no = ? ORDER BY rowid", key
    ))
    return _round_from(row, calls.get(key, {}))


def _calls_by_round(rows: Iterable[sqlite3.Row]) -> dict[tuple[str, int], dict]:
    """Group call rows into each round's answers, ballots and synthesis, in write order."""
    grouped: dict[tuple[str, int], dict] = {}
    for row in rows:
        calls = grouped.setdefault(
            (row["session_id"], row["round_no"]), {"answers": [], "ballots": [], "synthesis": None}
        )
        payload = json.loads(row["payload"])
        if row["kind"] == "synthesis":
            calls["synthesis"] = payload
        else:
            calls[f"{row['kind']}s"].append(payload)
    return grouped


def _session_from(row: sqlite3.Row, rounds: list[dict]) -> dict:
    return {
        "id": row["id"],
        "owner": row["owner"],
        "title": row["title"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "members": json.loads(row["members"]),
        "chairman": row["chairman"],
        "status": rounds[-1]["status"] if rounds else None,
        "rounds": rounds,
        "mode": row["mode"],
        "pinned": bool(row["pinned"]),
        "deleted_at": row["deleted_at"],
        "share_token": row["share_token"],
        "callback_url": row["callback_url"],
        "priority": row["priority"],
        "branched_from": loads(row["branched_from"]),
        "deliveries": json.loads(row["deliveries"]),
        "min_answers": row["min_answers"],
        "min_ballots": row["min_ballots"],
    }


def _round_from(row: sqlite3.Row, calls: dict) -> dict:
    return {
        "round_no": row["round_no"],
        "question": row["question"],
        "status": row["status"],
        "stage": row["stage"],
        "attempts": row["attempts"],
        "lease_until": row["lease_until"],
        "cancel_requested": bool(row["cancel_requested"]),
        "created_at": row["created_at"],
        "queued_at": row["queued_at"],
        "started_at": row["started_at"],
        "finished_at": row["finished_at"],
        "answers": calls.get("answers", []),
        "ballots": calls.get("ballots", []),
        "synthesis": calls.get("synthesis"),
        "aggregate": loads(row["aggregate"]),
        "notes": json.loads(row["notes"]),
        "error": row["error"],
    }


def dumps(value: object) -> str | None:
    """Return JSON text, or ``None`` for ``None``."""
    return None if value is None else json.dumps(value)


def loads(text: str | None) -> object:
    """Return the value of JSON text, or ``None`` for ``None``."""
    return None if text is None else json.loads(text)
