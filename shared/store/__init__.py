"""Open the configured store: MongoDB when ``MONGODB_URL`` is set, else the embedded SQLite file.

Callers depend on the ``Store`` protocol and the names re-exported here, never on an adapter.
pymongo is imported only when MongoDB is configured: it costs every process ~6 MiB.
"""

from __future__ import annotations

from shared.settings import Settings
from shared.store.base import (
    BUSY,
    CLAIMED,
    EXHAUSTED,
    FINISHED,
    MISSING,
    Claim,
    DuplicateKey,
    Lease,
    SessionQuery,
    Store,
    StoreUnavailable,
)
from shared.store.sqlite import SqliteStore

MONGODB_TIMEOUT_MS = 5_000  # how long to look for a server or wait to connect before giving up
MONGODB_SOCKET_TIMEOUT_MS = 30_000  # no store call should take this long; fail rather than hang

__all__ = [
    "BUSY",
    "CLAIMED",
    "EXHAUSTED",
    "FINISHED",
    "MISSING",
    "Claim",
    "DuplicateKey",
    "Lease",
    "SessionQuery",
    "Store",
    "StoreUnavailable",
    "open_store",
]


def open_store(settings: Settings) -> Store:
    """Return the store this deployment uses; call once per process, after any fork."""
    if settings.mongodb_url:
        return _open_mongo(settings)
    settings.sqlite_file.parent.mkdir(parents=True, exist_ok=True)
    return SqliteStore(settings.sqlite_file)


def _open_mongo(settings: Settings) -> Store:
    import pymongo

    from shared.store.mongo import MongoStore

    client = pymongo.MongoClient(
        settings.mongodb_url,
        appname="llm-council",
        connect=False,
        tz_aware=False,
        serverSelectionTimeoutMS=MONGODB_TIMEOUT_MS,
        connectTimeoutMS=MONGODB_TIMEOUT_MS,
        socketTimeoutMS=MONGODB_SOCKET_TIMEOUT_MS,
        maxPoolSize=settings.effective_store_pool_size,
    )
    try:
        return MongoStore(client, settings.mongodb_database, settings.session_retention_s)
    except StoreUnavailable:
        client.close()
        raise
