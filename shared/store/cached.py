"""A store that drops a session's cached read whenever a write could make it stale.

The API and the workers both open their store through this wrapper, so there is exactly one
place where a write invalidates the cache, whichever process makes it.

Only finished sessions are cached (``api.reads``): while a round is queued or running its
session changes every few hundred milliseconds, and the writes that carry a round to its end
(``ROUND_WRITES``) apply only to a round that is not finished yet. So those find nothing cached
and drop nothing: a round costs no cache round trips. Every other write may change a finished
session and drops its entry. A session becomes unfinished again only by a write that drops
(``append_round``), and a fill read before that drop is refused (``shared.cache``).
"""

from __future__ import annotations

from collections.abc import Callable

import redis

from shared.cache import Cache
from shared.settings import Settings
from shared.store import open_store
from shared.store.base import SessionQuery, Store

# Methods whose first argument is the id of the session they change; those that change only a
# round that is not finished, and so only a session that is not cached, drop nothing.
SESSION_WRITES = frozenset({
    "append_round", "request_cancel", "update_session", "delete_session", "set_share_token",
    "record_delivery",
})
ROUND_WRITES = frozenset({
    "claim_round", "renew_lease", "save_answer", "save_ballot", "save_synthesis",
    "finish_round", "touch_queued",
})
DELETE_BATCH = 500


def session_key(session_id: str) -> str:
    """Return the cache key of a session's rendered read."""
    return f"session:{session_id}"


def open_cached_store(settings: Settings, client: redis.Redis | None) -> CacheDroppingStore:
    """Open the configured store behind the session cache (Redis, or memory when disabled)."""
    cache = Cache(client if settings.redis_enabled else None)
    return CacheDroppingStore(open_store(settings), cache)


class CacheDroppingStore:
    """Wrap a ``Store``; every write that can change a cached session drops its entry."""

    def __init__(self, store: Store, cache: Cache) -> None:
        self._store = store
        self.cache = cache

    def __getattr__(self, name: str):
        method = getattr(self._store, name)
        if name not in SESSION_WRITES:
            return method
        return self._dropping(method)

    def _dropping(self, method: Callable) -> Callable:
        def write(session_id: str, *args, **kwargs):
            try:
                return method(session_id, *args, **kwargs)
            finally:
                self.cache.drop(session_key(session_id))

        return write

    def delete_sessions(self, owner: str | None, now: float) -> int:
        """Soft-delete an owner's sessions, then drop each one's cache entry."""
        ids = self._session_ids(owner)
        deleted = self._store.delete_sessions(owner, now)
        for start in range(0, len(ids), DELETE_BATCH):
            self.cache.drop(*(session_key(i) for i in ids[start:start + DELETE_BATCH]))
        return deleted

    def _session_ids(self, owner: str | None) -> list[str]:
        ids: list[str] = []
        after = None
        while True:
            page = self._store.list_sessions(SessionQuery(owner=owner), DELETE_BATCH, after)
            ids += [s["id"] for s in page]
            if len(page) < DELETE_BATCH:
                return ids
            last = page[-1]
            after = (last["pinned"], last["created_at"], last["id"])
