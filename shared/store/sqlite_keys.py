"""Keep idempotency records and API keys in the SQLite file (mixed into ``SqliteStore``)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager

from shared.records import INTERACTIVE
from shared.store.base import DuplicateKey, check_api_key
from shared.store.sqlite_schema import (
    API_KEY_COLUMNS,
    FINISH_KEY,
    INSERT_API_KEY,
    RECLAIM_KEY,
    RESERVE_KEY,
)


class KeyRecords:
    """The ``Store`` methods for idempotency keys and API keys."""

    _write: Callable[[], AbstractContextManager[sqlite3.Connection]]
    _read: Callable[[], AbstractContextManager[sqlite3.Connection]]

    # Idempotency records.

    def begin_idempotent(
        self, owner: str, key: str, fingerprint: str, now: float, *,
        reclaim_after: float | None = None,
    ) -> dict | None:
        """Reserve ``(owner, key)``; ``None`` when reserved, else the existing record."""
        params = {"owner": owner, "key": key, "fingerprint": fingerprint, "now": now}
        with self._write() as conn:
            if conn.execute(RESERVE_KEY, params).rowcount == 1:
                return None
            if reclaim_after is not None:
                stale = {**params, "stale_before": now - reclaim_after}
                if conn.execute(RECLAIM_KEY, stale).rowcount == 1:
                    return None
            row = conn.execute(
                "SELECT fingerprint, status, body, headers, created_at FROM idempotency"
                " WHERE owner = ? AND key = ?",
                (owner, key),
            ).fetchone()
        return {
            "fingerprint": row["fingerprint"],
            "status": row["status"],
            "body": None if row["body"] is None else json.loads(row["body"]),
            "headers": json.loads(row["headers"]),
            "created_at": row["created_at"],
        }

    def finish_idempotent(
        self, owner: str, key: str, status: int, body: dict, headers: dict
    ) -> None:
        """Record the answer to replay for a reserved key (the first answer stays)."""
        params = {
            "owner": owner, "key": key, "status": status, "body": json.dumps(body),
            "headers": json.dumps(headers),
        }
        with self._write() as conn:
            conn.execute(FINISH_KEY, params)

    def release_idempotent(self, owner: str, key: str) -> None:
        """Forget the record of ``(owner, key)``."""
        with self._write() as conn:
            conn.execute("DELETE FROM idempotency WHERE owner = ? AND key = ?", (owner, key))

    def purge_idempotency(self, created_before: float) -> int:
        """Delete idempotency records created before ``created_before``; return how many."""
        with self._write() as conn:
            return conn.execute(
                "DELETE FROM idempotency WHERE created_at < ?", (created_before,)
            ).rowcount

    # API keys.

    def create_api_key(self, key: dict) -> None:
        """Store an API key record; ``DuplicateKey`` when its id or hash exists."""
        check_api_key(key)
        params = {column: key.get(column) for column in API_KEY_COLUMNS}
        params["priority"] = key.get("priority") or INTERACTIVE
        try:
            with self._write() as conn:
                conn.execute(INSERT_API_KEY, params)
        except sqlite3.IntegrityError as error:
            raise DuplicateKey(f"an API key with this id or hash exists: {error}") from error

    def find_api_key(self, key_hash: str) -> dict | None:
        """Return the key with this hash, revoked or not."""
        with self._read() as conn:
            row = conn.execute("SELECT * FROM api_keys WHERE key_hash = ?", (key_hash,)).fetchone()
        return dict(row) if row else None

    def list_api_keys(self) -> list[dict]:
        """Return every API key, oldest first."""
        with self._read() as conn:
            rows = conn.execute("SELECT * FROM api_keys ORDER BY created_at, id").fetchall()
        return [dict(row) for row in rows]

    def revoke_api_key(self, key_id: str, now: float) -> bool:
        """Set ``revoked_at``; False when the key is missing or already revoked."""
        with self._write() as conn:
            return conn.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (now, key_id),
            ).rowcount == 1
