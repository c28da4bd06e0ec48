"""Keep sessions in one SQLite file: the embedded store for a single host.

The schema is normalised (``sessions``, ``rounds``, ``round_calls``) so that every checkpoint and
every conditional step is one targeted statement instead of a rewrite of a whole session. WAL
mode lets readers run beside the single writer; writers take the lock up front with
``BEGIN IMMEDIATE`` and wait for it (``busy_timeout``), so any number of API and worker
processes, each with many threads, can share the file. Each thread has its own connection.

The schema, its migrations and the SQL text live in ``sqlite_schema``, the row conversions in
``sqlite_rows``, idempotency records and API keys in ``sqlite_keys``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from shared.records import RUNNING
from shared.store.base import (
    BUSY,
    CLAIMED,
    EXHAUSTED,
    Claim,
    DuplicateKey,
    Lease,
    SessionQuery,
    StoreUnavailable,
    check_changes,
    check_finish,
    claim_refusal,
)
from shared.store.sqlite_keys import KeyRecords
from shared.store.sqlite_rows import (
    assemble,
    assemble_round,
    dumps,
    insert_calls,
    round_params,
    session_params,
)
from shared.store.sqlite_schema import (
    APPEND_ROUND,
    CANCEL,
    CANCEL_UNFINISHED,
    CLAIM,
    GIVE_UP,
    INSERT_CALL,
    INSERT_ROUND,
    INSERT_SESSION,
    LAST_STATUS,
    MATCHES_TEXT,
    PURGE_SESSIONS,
    RECORD_DELIVERY,
    RENEW,
    SOFT_DELETE,
    STALE,
    TOUCH_SESSION,
    migrate,
)

BUSY_TIMEOUT_S = 10.0
UNAVAILABLE_MESSAGES = ("database is locked", "database is busy", "unable to open", "disk i/o")


class SqliteStore(KeyRecords):
    """A ``Store`` in one SQLite file, shared by every process on the host."""

    def __init__(self, path: Path, busy_timeout_s: float = BUSY_TIMEOUT_S) -> None:
        self._path = Path(path)
        self._busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self._opened: list[tuple[int, sqlite3.Connection]] = []
        self._opened_lock = threading.Lock()
        # One writer per process at a time: SQLite serialises writers anyway, and its busy
        # handler polls with sleeps, so with dozens of threads per process contending a writer
        # could wait out ``busy_timeout`` ("database is locked"). Threads queue here instead.
        self._writer = threading.Lock()
        with _translated_errors():
            self._connection().execute("PRAGMA journal_mode = WAL")
        self._migrate()

    # Sessions.

    def create_session(self, session: dict) -> None:
        """Insert a new session with its rounds and any calls they already hold."""
        with self._write() as conn:
            conn.execute(INSERT_SESSION, session_params(session))
            for round_ in session["rounds"]:
                conn.execute(INSERT_ROUND, round_params(session["id"], round_))
                insert_calls(conn, session["id"], round_)

    def get_session(self, session_id: str) -> dict | None:
        """Return the whole session with its rounds; ``None`` when missing or deleted."""
        with self._read() as conn:
            return self._live_session(conn, session_id)

    def list_sessions(
        self, query: SessionQuery, limit: int, after: tuple[bool, float, str] | None = None
    ) -> list[dict]:
        """Return up to ``limit`` sessions matching ``query``: pinned first, then newest first.

        Three queries whatever the page size: the page, its rounds, their calls.
        """
        if limit < 1:
            return []  # a negative LIMIT means no limit to SQLite
        conditions = ["deleted_at IS NULL"]
        params: dict[str, object] = {"limit": limit}
        for name in ("owner", "pinned"):
            if getattr(query, name) is not None:
                conditions.append(f"{name} = :{name}")
                params[name] = getattr(query, name)
        if query.status is not None:
            conditions.append(f"{LAST_STATUS} = :status")
            params["status"] = query.status
        if query.text:
            conditions.append(MATCHES_TEXT)
            params["text"] = query.text
        if after is not None:
            conditions.append("(pinned, created_at, id) < (:after_pinned, :after_at, :after_id)")
            params.update(after_pinned=int(after[0]), after_at=after[1], after_id=after[2])
        sql = (
            f"SELECT * FROM sessions WHERE {' AND '.join(conditions)}"
            " ORDER BY pinned DESC, created_at DESC, id DESC LIMIT :limit"
        )
        with self._read() as conn:
            return assemble(conn, conn.execute(sql, params).fetchall())

    def update_session(
        self, session_id: str, changes: Mapping[str, object], now: float
    ) -> dict | None:
        """Change ``title`` and/or ``pinned``; see ``Store.update_session``."""
        check_changes(changes)
        assignments = "".join(f"{name} = :{name}, " for name in changes)
        params = {**changes, "session_id": session_id, "now": now}
        with self._write() as conn:
            updated = conn.execute(
                f"UPDATE sessions SET {assignments}updated_at = max(updated_at, :now)"
                " WHERE id = :session_id AND deleted_at IS NULL",
                params,
            ).rowcount
            return self._live_session(conn, session_id) if updated else None

    def delete_session(self, session_id: str, now: float) -> bool:
        """Soft-delete a session and cancel its unfinished round; False when already gone."""
        return self._soft_delete("id = :session_id", {"session_id": session_id}, now) == 1

    def delete_sessions(self, owner: str | None, now: float) -> int:
        """Soft-delete every session of ``owner`` (everyone's when ``None``); return how many."""
        if owner is None:
            return self._soft_delete("1", {}, now)
        return self._soft_delete("owner = :owner", {"owner": owner}, now)

    def _soft_delete(self, condition: str, params: dict, now: float) -> int:
        with self._write() as conn:
            ids = [row["id"] for row in conn.execute(
                SOFT_DELETE.format(condition=condition), {**params, "now": now}
            )]
            if ids:
                conn.execute(CANCEL_UNFINISHED, {"ids": json.dumps(ids), "now": now})
            return len(ids)

    def set_share_token(self, session_id: str, token: str | None) -> bool:
        """Share a session under ``token`` (``None`` stops sharing); False when gone."""
        try:
            with self._write() as conn:
                return conn.execute(
                    "UPDATE sessions SET share_token = ? WHERE id = ? AND deleted_at IS NULL",
                    (token, session_id),
                ).rowcount == 1
        except sqlite3.IntegrityError as error:
            raise DuplicateKey("another session is shared under this token") from error

    def get_shared_session(self, token: str) -> dict | None:
        """Return the session shared under ``token``; ``None`` when none is or it was deleted."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT * FROM sessions WHERE share_token = ? AND deleted_at IS NULL", (token,)
            ).fetchone()
            return assemble(conn, [row])[0] if row else None

    def purge_sessions(self, created_before: float, limit: int = 1000) -> int:
        """Delete for good up to ``limit`` sessions created before ``created_before``."""
        params = {"created_before": created_before, "limit": max(limit, 0)}
        with self._write() as conn:
            return conn.execute(PURGE_SESSIONS, params).rowcount  # rounds and calls cascade

    def record_delivery(self, session_id: str, delivery: dict) -> None:
        """Append one webhook delivery attempt to the session's ``deliveries``."""
        params = {"session_id": session_id, "delivery": json.dumps(delivery)}
        with self._write() as conn:
            conn.execute(RECORD_DELIVERY, params)

    def _live_session(self, conn: sqlite3.Connection, session_id: str) -> dict | None:
        row = conn.execute(
            "SELECT * FROM sessions WHERE id = ? AND deleted_at IS NULL", (session_id,)
        ).fetchone()
        return assemble(conn, [row])[0] if row else None

    # Rounds.

    def append_round(self, session_id: str, round_: dict) -> bool:
        """Add a follow-up round unless the last round is unfinished or the number is wrong."""
        with self._write() as conn:
            if conn.execute(APPEND_ROUND, round_params(session_id, round_)).rowcount != 1:
                return False
            insert_calls(conn, session_id, round_)
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
                round_ = assemble_round(conn, session_id, round_no)
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
        self, now: float, queued_before: float, limit: int = 100,
        reoffer_before: float | None = None,
    ) -> list[tuple[str, int]]:
        """Return rounds to enqueue again (see ``Store.stale_rounds``)."""
        reoffer_before = queued_before if reoffer_before is None else reoffer_before
        params = {"now": now, "queued_before": queued_before, "reoffer_before": reoffer_before,
                  "limit": max(limit, 0)}
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
        conn.create_function("contains_text", 2, _contains_text, deterministic=True)
        with self._opened_lock:
            self._opened.append((os.getpid(), conn))
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """Hold the write lock around statements that must apply together."""
        with self._writer, _translated_errors():
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
            migrate(conn, self._path)


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
    return value if name == "error" else dumps(value)


def _contains_text(haystack: str | None, needle: str | None) -> bool:
    """Match like MongoDB's case-insensitive regex: ``lower()`` knows more than ASCII."""
    return haystack is not None and needle is not None and needle.lower() in haystack.lower()


def _touch(conn: sqlite3.Connection, session_id: str, now: float) -> None:
    conn.execute(TOUCH_SESSION, {"session_id": session_id, "now": now})
