"""Keep sessions in one SQLite file: the embedded store for a single host.

The schema is normalised (``sessions``, ``rounds``, ``round_calls``) so that every checkpoint and
every conditional step is one targeted statement instead of a rewrite of a whole session. WAL
mode lets readers run beside the single writer; writers take the lock up front with
``BEGIN IMMEDIATE`` and wait for it (``busy_timeout``), so any number of API and worker
processes, each with many threads, can share the file. Each thread has its own connection.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from shared.records import RUNNING, TERMINAL
from shared.store.base import (
    BUSY,
    CLAIMED,
    EXHAUSTED,
    Claim,
    Lease,
    StoreUnavailable,
    check_finish,
    claim_refusal,
)

BUSY_TIMEOUT_S = 10.0
UNAVAILABLE_MESSAGES = ("database is locked", "database is busy", "unable to open", "disk i/o")
_TERMINAL_SQL = ", ".join(f"'{status}'" for status in sorted(TERMINAL))

# One tuple of statements per schema version; ``PRAGMA user_version`` records how many ran.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE IF NOT EXISTS sessions (
            id TEXT PRIMARY KEY,
            owner TEXT,
            title TEXT NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            members TEXT NOT NULL,
            chairman TEXT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS sessions_by_owner"
        " ON sessions (owner, created_at DESC, id DESC)",
        "CREATE INDEX IF NOT EXISTS sessions_by_age ON sessions (created_at DESC, id DESC)",
        """CREATE TABLE IF NOT EXISTS rounds (
            session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
            round_no INTEGER NOT NULL,
            question TEXT NOT NULL,
            status TEXT NOT NULL,
            stage TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            lease_until REAL,
            cancel_requested INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL,
            queued_at REAL NOT NULL,
            started_at REAL,
            finished_at REAL,
            aggregate TEXT,
            notes TEXT NOT NULL DEFAULT '[]',
            error TEXT,
            PRIMARY KEY (session_id, round_no)
        )""",
        "CREATE INDEX IF NOT EXISTS rounds_by_status ON rounds (status)",
        """CREATE TABLE IF NOT EXISTS round_calls (
            session_id TEXT NOT NULL,
            round_no INTEGER NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('answer', 'ballot', 'synthesis')),
            member TEXT NOT NULL,
            payload TEXT NOT NULL,
            PRIMARY KEY (session_id, round_no, kind, member),
            FOREIGN KEY (session_id, round_no)
                REFERENCES rounds (session_id, round_no) ON DELETE CASCADE
        )""",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

ROUND_COLUMNS = (
    "session_id", "round_no", "question", "status", "stage", "attempts", "lease_until",
    "cancel_requested", "created_at", "queued_at", "started_at", "finished_at", "aggregate",
    "notes", "error",
)
_ROUND_VALUES = ", ".join(f":{column}" for column in ROUND_COLUMNS)
INSERT_ROUND = f"INSERT INTO rounds ({', '.join(ROUND_COLUMNS)}) VALUES ({_ROUND_VALUES})"
APPEND_ROUND = f"""
    INSERT INTO rounds ({', '.join(ROUND_COLUMNS)}) SELECT {_ROUND_VALUES}
    WHERE (SELECT max(round_no) FROM rounds WHERE session_id = :session_id) = :round_no - 1
      AND (SELECT status FROM rounds WHERE session_id = :session_id AND round_no = :round_no - 1)
          IN ({_TERMINAL_SQL})"""
INSERT_CALL = """
    INSERT OR IGNORE INTO round_calls (session_id, round_no, kind, member, payload)
    SELECT :session_id, :round_no, :kind, :member, :payload
    WHERE EXISTS (SELECT 1 FROM rounds WHERE session_id = :session_id AND round_no = :round_no
                  AND status = :status)"""
CLAIM = """
    UPDATE rounds SET status = 'running', lease_until = :lease_until, attempts = attempts + 1,
                      started_at = coalesce(started_at, :now)
    WHERE session_id = :session_id AND round_no = :round_no AND attempts < :max_attempts
      AND (status = 'queued' OR (status = 'running' AND lease_until < :now))"""
GIVE_UP = """
    UPDATE rounds SET status = 'failed', lease_until = NULL, finished_at = :now,
                      error = 'no worker finished the round within ' || :max_attempts || ' attempts'
    WHERE session_id = :session_id AND round_no = :round_no"""
RENEW = """
    UPDATE rounds SET lease_until = :lease_until, stage = coalesce(:stage, stage)
    WHERE session_id = :session_id AND round_no = :round_no AND status = 'running'
      AND attempts = :attempt
    RETURNING cancel_requested"""
CANCEL = """
    UPDATE rounds SET cancel_requested = 1,
        status = CASE status WHEN 'queued' THEN 'cancelled' ELSE status END,
        finished_at = CASE status WHEN 'queued' THEN :now ELSE finished_at END
    WHERE session_id = :session_id AND round_no = :round_no AND status IN ('queued', 'running')
    RETURNING status"""
STALE = """
    SELECT session_id, round_no FROM rounds
    WHERE queued_at < :queued_before
      AND (status = 'queued' OR (status = 'running' AND lease_until < :now))
    LIMIT :limit"""
TOUCH_SESSION = "UPDATE sessions SET updated_at = max(updated_at, :now) WHERE id = :session_id"


class SqliteStore:
    """A ``Store`` in one SQLite file, shared by every process on the host."""

    def __init__(self, path: Path, busy_timeout_s: float = BUSY_TIMEOUT_S) -> None:
        self._path = Path(path)
        self._busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self._opened: list[tuple[int, sqlite3.Connection]] = []
        self._opened_lock = threading.Lock()
        with _translated_errors():
            self._connection().execute("PRAGMA journal_mode = WAL")
        self._migrate()

    # Sessions.

    def create_session(self, session: dict) -> None:
        """Insert a new session with its rounds and any calls they already hold."""
        with self._write() as conn:
            conn.execute(
                "INSERT INTO sessions (id, owner, title, created_at, updated_at, members, chairman)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    session["id"], session["owner"], session["title"], session["created_at"],
                    session["updated_at"], json.dumps(session["members"]), session["chairman"],
                ),
            )
            for round_ in session["rounds"]:
                conn.execute(INSERT_ROUND, _round_params(session["id"], round_))
                _insert_calls(conn, session["id"], round_)

    def get_session(self, session_id: str) -> dict | None:
        """Return the whole session with its rounds, or ``None``."""
        with self._read() as conn:
            row = conn.execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()
            return _assemble(conn, [row])[0] if row else None

    def list_sessions(
        self, owner: str | None, limit: int, before: tuple[float, str] | None = None
    ) -> list[dict]:
        """Return up to ``limit`` sessions of ``owner`` (all when ``None``), newest first."""
        if limit < 1:
            return []  # a negative LIMIT means no limit to SQLite
        conditions, params = [], []
        if owner is not None:
            conditions.append("owner = ?")
            params.append(owner)
        if before is not None:
            conditions.append("(created_at, id) < (?, ?)")
            params.extend(before)
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        query = f"SELECT * FROM sessions {where} ORDER BY created_at DESC, id DESC LIMIT ?"
        with self._read() as conn:
            return _assemble(conn, conn.execute(query, (*params, limit)).fetchall())

    # Rounds.

    def append_round(self, session_id: str, round_: dict) -> bool:
        """Add a follow-up round unless the last round is unfinished or the number is wrong."""
        with self._write() as conn:
            if conn.execute(APPEND_ROUND, _round_params(session_id, round_)).rowcount != 1:
                return False
            _insert_calls(conn, session_id, round_)
            _touch(conn, session_id, round_["created_at"])
            return True

    def claim_round(
        self, session_id: str, round_no: int, now: float, lease_until: float, max_attempts: int
    ) -> Claim:
        """Take the round if it is queued or its lease expired; see ``Store.claim_round``."""
        key = {"session_id": session_id, "round_no": round_no}
        with self._write() as conn:
            claim = {**key, "now": now, "lease_until": lease_until, "max_attempts": max_attempts}
            if conn.execute(CLAIM, claim).rowcount == 1:
                _touch(conn, session_id, now)
                round_ = _assemble_round(conn, session_id, round_no)
                return Claim(CLAIMED, round_["attempts"], round_)
            row = conn.execute(
                "SELECT status, lease_until, attempts FROM rounds"
                " WHERE session_id = :session_id AND round_no = :round_no",
                key,
            ).fetchone()
            # Under the write lock nothing changed since the claim, so None cannot happen.
            outcome = claim_refusal(row and dict(row), now, max_attempts) or BUSY
            if outcome == EXHAUSTED:
                conn.execute(GIVE_UP, {**key, "now": now, "max_attempts": max_attempts})
                _touch(conn, session_id, now)
            return Claim(outcome)

    def renew_lease(
        self, session_id: str, round_no: int, attempt: int, lease_until: float,
        stage: str | None = None,
    ) -> Lease:
        """Extend the lease held as ``attempt`` (and record the stage); report cancel requests."""
        params = {
            "session_id": session_id, "round_no": round_no, "attempt": attempt,
            "lease_until": lease_until, "stage": stage,
        }
        with self._write() as conn:
            row = conn.execute(RENEW, params).fetchone()
            if row is None:
                return Lease(held=False)
            if stage is not None:
                _touch(conn, session_id, time.time())
            return Lease(held=True, cancel_requested=bool(row["cancel_requested"]))

    def finish_round(
        self, session_id: str, round_no: int, attempt: int, status: str, outcome: dict
    ) -> bool:
        """End a running round held as ``attempt``; False when the lease is not ours."""
        check_finish(status, outcome)
        fields = {name: _column_value(name, value) for name, value in outcome.items()}
        assignments = "".join(f", {name} = :{name}" for name in fields)
        params = {
            **fields, "session_id": session_id, "round_no": round_no, "attempt": attempt,
            "status": status, "now": time.time(),
        }
        with self._write() as conn:
            finished = conn.execute(
                "UPDATE rounds SET status = :status, finished_at = :now, lease_until = NULL"
                f"{assignments} WHERE session_id = :session_id AND round_no = :round_no"
                " AND status = 'running' AND attempts = :attempt",
                params,
            ).rowcount == 1
            if finished:
                _touch(conn, session_id, params["now"])
            return finished

    def request_cancel(self, session_id: str, round_no: int, now: float) -> str | None:
        """Cancel a queued round at once, or flag a running one; return the status after."""
        key = {"session_id": session_id, "round_no": round_no}
        with self._write() as conn:
            row = conn.execute(CANCEL, {**key, "now": now}).fetchone()
            if row is not None:
                _touch(conn, session_id, now)
                return row["status"]
            row = conn.execute(
                "SELECT status FROM rounds WHERE session_id = :session_id AND round_no = :round_no",
                key,
            ).fetchone()
            return row["status"] if row else None

    def touch_queued(self, session_id: str, round_no: int, now: float) -> None:
        """Record that an unfinished round was (re-)offered to the queue at ``now``."""
        with self._write() as conn:
            conn.execute(
                "UPDATE rounds SET queued_at = ?"
                " WHERE session_id = ? AND round_no = ? AND status IN ('queued', 'running')",
                (now, session_id, round_no),
            )

    def stale_rounds(
        self, now: float, queued_before: float, limit: int = 100
    ) -> list[tuple[str, int]]:
        """Return unfinished rounds last offered before ``queued_before`` that are queued or
        hold a lease that expired before ``now``."""
        params = {"now": now, "queued_before": queued_before, "limit": max(limit, 0)}
        with self._read() as conn:
            return [(row[0], row[1]) for row in conn.execute(STALE, params)]

    # Checkpoints.

    def save_answer(self, session_id: str, round_no: int, answer: dict) -> None:
        """Checkpoint one member's answer (first write wins)."""
        self._save_call(session_id, round_no, "answer", answer["member"], answer)

    def save_ballot(self, session_id: str, round_no: int, ballot: dict) -> None:
        """Checkpoint one reviewer's ballot (first write wins)."""
        self._save_call(session_id, round_no, "ballot", ballot["reviewer"], ballot)

    def save_synthesis(self, session_id: str, round_no: int, synthesis: dict) -> None:
        """Checkpoint the chairman's synthesis (first write wins)."""
        self._save_call(session_id, round_no, "synthesis", "", synthesis)

    def _save_call(
        self, session_id: str, round_no: int, kind: str, member: str, payload: dict
    ) -> None:
        params = {
            "session_id": session_id, "round_no": round_no, "kind": kind, "member": member,
            "payload": json.dumps(payload), "status": RUNNING,
        }
        with self._write() as conn:
            if conn.execute(INSERT_CALL, params).rowcount == 1:
                _touch(conn, session_id, time.time())

    # Connections.

    def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the file answers a query."""
        with self._read() as conn:
            conn.execute("SELECT count(*) FROM sessions WHERE 0").fetchone()

    def close(self) -> None:
        """Close every connection this process opened."""
        with self._opened_lock:
            mine = [conn for pid, conn in self._opened if pid == os.getpid()]
            self._opened = [(pid, conn) for pid, conn in self._opened if pid != os.getpid()]
        for conn in mine:
            conn.close()
        self._local = threading.local()

    def _connection(self) -> sqlite3.Connection:
        """Return this thread's connection, opening one after a fork or on first use."""
        if getattr(self._local, "pid", None) != os.getpid():
            self._local.connection = self._connect()
            self._local.pid = os.getpid()
        return self._local.connection

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._path, timeout=self._busy_timeout_s, isolation_level=None,
            check_same_thread=False,  # only so close() may close it; each thread uses its own
        )
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_s * 1000)}")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        with self._opened_lock:
            self._opened.append((os.getpid(), conn))
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """Hold the write lock around statements that must apply together."""
        with _translated_errors():
            conn = self._connection()
            with _transaction(conn, "BEGIN IMMEDIATE"):
                yield conn

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """Read from one snapshot; WAL lets this run while a writer works."""
        with _translated_errors():
            conn = self._connection()
            with _transaction(conn, "BEGIN"):
                yield conn

    def _migrate(self) -> None:
        with self._write() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self._path} has schema version {version}; this code knows {SCHEMA_VERSION}"
                )
            for number in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[number]:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number + 1}")


@contextmanager
def _transaction(conn: sqlite3.Connection, begin: str) -> Iterator[None]:
    conn.execute(begin)
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


@contextmanager
def _translated_errors() -> Iterator[None]:
    """Turn a locked, missing or unreadable database file into ``StoreUnavailable``."""
    try:
        yield
    except sqlite3.OperationalError as error:
        if any(message in str(error).lower() for message in UNAVAILABLE_MESSAGES):
            raise StoreUnavailable(f"SQLite store: {error}") from error
        raise


def _column_value(name: str, value: object) -> object:
    return value if name == "error" else _dumps(value)


def _touch(conn: sqlite3.Connection, session_id: str, now: float) -> None:
    conn.execute(TOUCH_SESSION, {"session_id": session_id, "now": now})


def _round_params(session_id: str, round_: dict) -> dict:
    params = {column: round_.get(column) for column in ROUND_COLUMNS}
    params.update(
        session_id=session_id,
        cancel_requested=int(bool(round_.get("cancel_requested"))),
        aggregate=_dumps(round_.get("aggregate")),
        notes=json.dumps(round_.get("notes") or []),
    )
    return params


def _insert_calls(conn: sqlite3.Connection, session_id: str, round_: dict) -> None:
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


def _assemble(conn: sqlite3.Connection, sessions: Iterable[sqlite3.Row]) -> list[dict]:
    """Build session dicts in the ``shared.records`` shape from their rows."""
    sessions = list(sessions)
    ids = json.dumps([row["id"] for row in sessions])
    in_ids = "session_id IN (SELECT value FROM json_each(?))"
    rounds: dict[str, list[dict]] = {row["id"]: [] for row in sessions}
    calls = _calls_by_round(conn.execute(
        f"SELECT * FROM round_calls WHERE {in_ids} ORDER BY rowid", (ids,)
    ))
    for row in conn.execute(f"SELECT * FROM rounds WHERE {in_ids} ORDER BY round_no", (ids,)):
        key = (row["session_id"], row["round_no"])
        rounds[row["session_id"]].append(_round_from(row, calls.get(key, {})))
    return [_session_from(row, rounds[row["id"]]) for row in sessions]


def _assemble_round(conn: sqlite3.Connection, session_id: str, round_no: int) -> dict:
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
        "aggregate": _loads(row["aggregate"]),
        "notes": json.loads(row["notes"]),
        "error": row["error"],
    }


def _dumps(value: object) -> str | None:
    return None if value is None else json.dumps(value)


def _loads(text: str | None) -> object:
    return None if text is None else json.loads(text)

