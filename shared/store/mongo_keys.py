"""Keep idempotency records and API keys in MongoDB (mixed into ``MongoStore``).

An idempotency record is one document whose ``(owner, key)`` index is unique: the insert that
wins reserves the key. API keys are documents keyed by their id, with a unique ``key_hash``.
"""

from __future__ import annotations

from pymongo import ASCENDING
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from shared.records import INTERACTIVE
from shared.store.base import DuplicateKey, StoreUnavailable, check_api_key
from shared.store.mongo_errors import reachable
from shared.store.mongo_schema import bson_date

RECORD_FIELDS = ("fingerprint", "status", "body", "headers", "created_at")
API_KEY_FIELDS = ("name", "scope", "key_hash", "created_at", "revoked_at", "callback_url")
RESERVE_TRIES = 3  # a lost insert re-reads; only a record released meanwhile needs another try


class KeyRecords:
    """The ``Store`` methods for idempotency keys and API keys."""

    _db: Database

    # Idempotency records.

    @reachable
    def begin_idempotent(
        self, owner: str, key: str, fingerprint: str, now: float, *,
        reclaim_after: float | None = None,
    ) -> dict | None:
        """Reserve ``(owner, key)``; ``None`` when reserved, else the existing record."""
        records = self._db["idempotency"]
        fresh: dict[str, object] = {
            "fingerprint": fingerprint, "status": None, "body": None, "headers": {},
            "created_at": now, "created_on": bson_date(now),
        }
        for _ in range(RESERVE_TRIES):
            try:
                records.insert_one({"owner": owner, "key": key, **fresh})
                return None
            except DuplicateKeyError:
                pass
            if reclaim_after is not None and records.find_one_and_update(
                {"owner": owner, "key": key, "status": None,
                 "created_at": {"$lt": now - reclaim_after}},
                {"$set": fresh},
            ):
                return None
            existing = records.find_one({"owner": owner, "key": key})
            if existing is not None:
                return {name: existing[name] for name in RECORD_FIELDS}
        raise StoreUnavailable(f"idempotency key {key!r} kept changing while being reserved")

    @reachable
    def finish_idempotent(
        self, owner: str, key: str, status: int, body: dict, headers: dict
    ) -> None:
        """Record the answer to replay for a reserved key (the first answer stays)."""
        self._db["idempotency"].update_one(
            {"owner": owner, "key": key, "status": None},
            {"$set": {"status": status, "body": body, "headers": headers}},
        )

    @reachable
    def release_idempotent(self, owner: str, key: str) -> None:
        """Forget the record of ``(owner, key)``."""
        self._db["idempotency"].delete_one({"owner": owner, "key": key})

    @reachable
    def purge_idempotency(self, created_before: float) -> int:
        """Delete idempotency records created before ``created_before``; return how many.

        The TTL index expires them after a day anyway; this is for a sooner sweep.
        """
        return self._db["idempotency"].delete_many(
            {"created_at": {"$lt": created_before}}
        ).deleted_count

    # API keys.

    @reachable
    def create_api_key(self, key: dict) -> None:
        """Store an API key record; ``DuplicateKey`` when its id or hash exists."""
        check_api_key(key)
        document = {"_id": key["id"], **{name: key.get(name) for name in API_KEY_FIELDS}}
        document["priority"] = key.get("priority") or INTERACTIVE
        try:
            self._db["api_keys"].insert_one(document)
        except DuplicateKeyError as error:
            raise DuplicateKey("an API key with this id or hash exists") from error

    @reachable
    def find_api_key(self, key_hash: str) -> dict | None:
        """Return the key with this hash, revoked or not."""
        document = self._db["api_keys"].find_one({"key_hash": key_hash})
        return _api_key_from(document) if document else None

    @reachable
    def list_api_keys(self) -> list[dict]:
        """Return every API key, oldest first."""
        cursor = self._db["api_keys"].find().sort([("created_at", ASCENDING), ("_id", ASCENDING)])
        return [_api_key_from(document) for document in cursor]

    @reachable
    def revoke_api_key(self, key_id: str, now: float) -> bool:
        """Set ``revoked_at``; False when the key is missing or already revoked."""
        result = self._db["api_keys"].update_one(
            {"_id": key_id, "revoked_at": None}, {"$set": {"revoked_at": now}}
        )
        return result.matched_count == 1


def _api_key_from(document: dict) -> dict:
    return {"id": document["_id"], **{name: document.get(name) for name in API_KEY_FIELDS},
            "priority": document.get("priority", INTERACTIVE)}
