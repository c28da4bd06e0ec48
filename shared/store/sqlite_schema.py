"""The SQLite store's schema, its migrations and the SQL text of its statements.

``PRAGMA user_version`` records how many migrations a file has run; ``migrate`` runs the rest in
one write transaction, so an older file upgrades in place the first time newer code opens it and
concurrent openers take turns.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from shared.records import TERMINAL

_TERMINAL_SQL = ", ".join(f"'{status}'" for status in sorted(TERMINAL))

# One tuple of statements per schema version.
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
    (
        # Sessions: listing options, soft delete, sharing, webhooks, branching.
        "ALTER TABLE sessions ADD COLUMN mode TEXT NOT NULL DEFAULT 'council'",
        "ALTER TABLE sessions ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE sessions ADD COLUMN deleted_at REAL",
        "ALTER TABLE sessions ADD COLUMN share_token TEXT",
        "ALTER TABLE sessions ADD COLUMN callback_url TEXT",
        "ALTER TABLE sessions ADD COLUMN priority TEXT NOT NULL DEFAULT 'interactive'",
        "ALTER TABLE sessions ADD COLUMN branched_from TEXT",
        "ALTER TABLE sessions ADD COLUMN deliveries TEXT NOT NULL DEFAULT '[]'",
        # Listing is pinned first, then newest first, and never shows deleted sessions.
        "DROP INDEX IF EXISTS sessions_by_owner",
        "CREATE INDEX sessions_listed_by_owner ON sessions"
        " (owner, pinned DESC, created_at DESC, id DESC) WHERE deleted_at IS NULL",
        "CREATE INDEX sessions_listed ON sessions"
        " (pinned DESC, created_at DESC, id DESC) WHERE deleted_at IS NULL",
        "CREATE UNIQUE INDEX sessions_by_share_token ON sessions (share_token)"
        " WHERE share_token IS NOT NULL",
        """CREATE TABLE idempotency (
            owner TEXT NOT NULL,
            key TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            status INTEGER,
            body TEXT,
            headers TEXT NOT NULL DEFAULT '{}',
            created_at REAL NOT NULL,
            PRIMARY KEY (owner, key)
        )""",
        "CREATE INDEX idempotency_by_age ON idempotency (created_at)",
        """CREATE TABLE api_keys (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            scope TEXT NOT NULL,
            key_hash TEXT NOT NULL UNIQUE,
            created_at REAL NOT NULL,
            revoked_at REAL,
            callback_url TEXT,
            priority TEXT NOT NULL DEFAULT 'interactive'
        )""",
    ),
    (
        # Sessions: the quorums a submission asked for (NULL: the service's defaults).
        "ALTER TABLE sessions ADD COLUMN min_answers INTEGER",
        "ALTER TABLE sessions ADD COLUMN min_ballots INTEGER",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

SESSION_COLUMNS = (
    "id", "owner", "title", "created_at", "updated_at", "members", "chairman", "mode", "pinned",
    "deleted_at", "share_token", "callback_url", "priority", "branched_from", "deliveries",
    "min_answers", "min_ballots",
)
INSERT_SESSION = (
    f"INSERT INTO sessions ({', '.join(SESSION_COLUMNS)})"
    f" VALUES ({', '.join(f':{column}' for column in SESSION_COLUMNS)})"
)
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
    WHERE (status = 'queued' AND queued_at < :queued_before)
       OR (status = 'running' AND lease_until < :now AND queued_at < :reoffer_before)
    LIMIT :limit"""
TOUCH_SESSION = "UPDATE sessions SET updated_at = max(updated_at, :now) WHERE id = :session_id"

# Session administration: listing, soft delete, sharing, retention, webhooks.
LAST_STATUS = (
    "(SELECT status FROM rounds WHERE rounds.session_id = sessions.id"
    " ORDER BY round_no DESC LIMIT 1)"
)
MATCHES_TEXT = (
    "(contains_text(title, :text) OR EXISTS (SELECT 1 FROM rounds"
    " WHERE rounds.session_id = sessions.id AND contains_text(question, :text)))"
)
SOFT_DELETE = """
    UPDATE sessions SET deleted_at = :now, share_token = NULL, updated_at = max(updated_at, :now)
    WHERE deleted_at IS NULL AND {condition}
    RETURNING id"""
CANCEL_UNFINISHED = """
    UPDATE rounds SET cancel_requested = 1,
        status = CASE status WHEN 'queued' THEN 'cancelled' ELSE status END,
        finished_at = CASE status WHEN 'queued' THEN :now ELSE finished_at END
    WHERE session_id IN (SELECT value FROM json_each(:ids)) AND status IN ('queued', 'running')"""
PURGE_SESSIONS = """
    DELETE FROM sessions WHERE id IN (
        SELECT id FROM sessions WHERE created_at < :created_before
        ORDER BY created_at LIMIT :limit)"""
RECORD_DELIVERY = """
    UPDATE sessions SET deliveries = json_insert(deliveries, '$[#]', json(:delivery))
    WHERE id = :session_id"""

# Idempotency records and API keys.
RESERVE_KEY = """
    INSERT OR IGNORE INTO idempotency (owner, key, fingerprint, created_at)
    VALUES (:owner, :key, :fingerprint, :now)"""
RECLAIM_KEY = """
    UPDATE idempotency SET fingerprint = :fingerprint, created_at = :now, headers = '{}'
    WHERE owner = :owner AND key = :key AND status IS NULL AND created_at < :stale_before"""
FINISH_KEY = """
    UPDATE idempotency SET status = :status, body = :body, headers = :headers
    WHERE owner = :owner AND key = :key AND status IS NULL"""
API_KEY_COLUMNS = (
    "id", "name", "scope", "key_hash", "created_at", "revoked_at", "callback_url", "priority",
)
INSERT_API_KEY = (
    f"INSERT INTO api_keys ({', '.join(API_KEY_COLUMNS)})"
    f" VALUES ({', '.join(f':{column}' for column in API_KEY_COLUMNS)})"
)


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Run the migrations this file has not run yet; call inside a write transaction."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise RuntimeError(f"{path} has schema version {version}; this code knows {SCHEMA_VERSION}")
    for number in range(version, SCHEMA_VERSION):
        for statement in MIGRATIONS[number]:
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {number + 1}")
