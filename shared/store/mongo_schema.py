"""The MongoDB store's indexes, TTL expiry and its one-time document migrations.

TTL indexes only expire BSON dates, so documents that should expire carry ``created_on`` (a
datetime written beside the float ``created_at`` that queries use). The ``meta`` collection's
``schema`` document records which migrations ran; every process start runs the missing ones,
and each is safe to run twice, so processes starting together need no lock.
"""

from __future__ import annotations

import datetime as dt

from pymongo import ASCENDING, DESCENDING
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import OperationFailure

from shared.records import IDEMPOTENCY_TTL_S, session_defaults

SESSION_TTL_INDEX = "expire_sessions"
SCHEMA_VERSION = 2
BACKFILL_BATCH = 500


def bson_date(timestamp: float) -> dt.datetime:
    """Return an epoch timestamp as the UTC datetime that a TTL index can expire."""
    return dt.datetime.fromtimestamp(timestamp, dt.UTC)


def ensure_indexes(db: Database) -> None:
    """Create the indexes the queries rely on (a no-op when they exist)."""
    sessions = db["sessions"]
    sessions.create_index(
        [("owner", ASCENDING), ("pinned", DESCENDING), ("created_at", DESCENDING),
         ("_id", DESCENDING)],
        name="owner_listing",
    )
    sessions.create_index(
        [("pinned", DESCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)], name="listing"
    )
    sessions.create_index([("created_at", DESCENDING), ("_id", DESCENDING)], name="newest_first")
    sessions.create_index("status", name="status")
    # Only string tokens are indexed, so any number of unshared sessions may hold none.
    sessions.create_index(
        "share_token", name="share_token", unique=True,
        partialFilterExpression={"share_token": {"$type": "string"}},
    )
    idempotency = db["idempotency"]
    idempotency.create_index(
        [("owner", ASCENDING), ("key", ASCENDING)], name="owner_key", unique=True
    )
    idempotency.create_index("created_on", name="expire_on", expireAfterSeconds=IDEMPOTENCY_TTL_S)
    db["api_keys"].create_index("key_hash", name="key_hash", unique=True)


def keep_sessions_for(db: Database, retention_s: float | None) -> None:
    """Make MongoDB expire sessions ``retention_s`` after creation (never when ``None``)."""
    sessions = db["sessions"]
    existing = sessions.index_information().get(SESSION_TTL_INDEX)
    if retention_s is None:
        if existing is not None:
            _drop_index(sessions, SESSION_TTL_INDEX)
        return
    seconds = max(1, round(retention_s))  # MongoDB takes whole seconds
    if existing is None:
        sessions.create_index("created_on", name=SESSION_TTL_INDEX, expireAfterSeconds=seconds)
    elif existing.get("expireAfterSeconds") != seconds:
        db.command(
            "collMod", "sessions", index={"name": SESSION_TTL_INDEX, "expireAfterSeconds": seconds}
        )


def migrate(db: Database) -> None:
    """Bring documents written by older versions up to the current shapes."""
    meta = db["meta"]
    found = meta.find_one({"_id": "schema"})
    version = found["version"] if found else 1
    if version < 2:
        _add_session_fields(db["sessions"])
        _add_creation_dates(db["sessions"])
        _add_creation_dates(db["idempotency"])
        _drop_index(db["sessions"], "owner_newest_first")  # replaced by owner_listing
        _drop_index(db["idempotency"], "expire")  # it was on the float created_at: never fired
    if version < SCHEMA_VERSION:
        meta.update_one(
            {"_id": "schema"}, {"$max": {"version": SCHEMA_VERSION}}, upsert=True
        )


def _add_session_fields(sessions: Collection) -> None:
    sessions.update_many({"mode": {"$exists": False}}, {"$set": session_defaults()})


def _add_creation_dates(collection: Collection) -> None:
    lacking = {"created_on": {"$exists": False}}
    # Each batch drops out of the filter once written, so the next read returns the next one.
    while batch := list(collection.find(lacking, {"created_at": 1}).limit(BACKFILL_BATCH)):
        for document in batch:
            collection.update_one(
                {"_id": document["_id"]},
                {"$set": {"created_on": bson_date(document["created_at"])}},
            )


def _drop_index(collection: Collection, name: str) -> None:
    """Drop an index if it exists (another process may drop it at the same moment)."""
    if name not in collection.index_information():
        return
    try:
        collection.drop_index(name)
    except OperationFailure:
        if name in collection.index_information():
            raise
