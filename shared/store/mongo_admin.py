"""Edit, soft-delete, share, purge and annotate sessions in MongoDB (mixed into ``MongoStore``).

Deleting marks the documents first and then cancels the unfinished rounds of exactly the
documents it marked (their ``deleted_at`` is this call's ``now``): a session created meanwhile is
never touched, and a crash between the two steps leaves at worst a round that runs to its end.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from pymongo import ReturnDocument
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError

from shared.records import UNFINISHED, session_defaults
from shared.store.base import DuplicateKey, check_changes
from shared.store.mongo_errors import reachable


class SessionAdmin:
    """The ``Store`` methods that edit, delete, share, purge and annotate whole sessions."""

    _sessions: Collection
    request_cancel: Callable[[str, int, float], str | None]

    @reachable
    def update_session(
        self, session_id: str, changes: Mapping[str, object], now: float
    ) -> dict | None:
        """Change ``title`` and/or ``pinned``; see ``Store.update_session``."""
        check_changes(changes)
        update: dict = {"$max": {"updated_at": now}}
        if changes:
            update["$set"] = dict(changes)
        document = self._sessions.find_one_and_update(
            {"_id": session_id, "deleted_at": None}, update,
            return_document=ReturnDocument.AFTER,
        )
        return session_from(document) if document else None

    @reachable
    def delete_session(self, session_id: str, now: float) -> bool:
        """Soft-delete a session and cancel its unfinished round; False when already gone."""
        return self._soft_delete({"_id": session_id}, now) == 1

    @reachable
    def delete_sessions(self, owner: str | None, now: float) -> int:
        """Soft-delete every session of ``owner`` (everyone's when ``None``); return how many."""
        return self._soft_delete({} if owner is None else {"owner": owner}, now)

    def _soft_delete(self, query: dict, now: float) -> int:
        """Mark the sessions deleted, then cancel the unfinished rounds of those it marked."""
        deleted = self._sessions.update_many(
            {**query, "deleted_at": None},
            {"$set": {"deleted_at": now, "share_token": None}, "$max": {"updated_at": now}},
        ).modified_count
        if deleted:
            unfinished = self._sessions.find(
                {**query, "deleted_at": now, "status": {"$in": sorted(UNFINISHED)}},
                projection={"rounds.round_no": 1},
            )
            for document in list(unfinished):
                self.request_cancel(document["_id"], len(document["rounds"]), now)
        return deleted

    @reachable
    def set_share_token(self, session_id: str, token: str | None) -> bool:
        """Share a session under ``token`` (``None`` stops sharing); False when gone."""
        try:
            result = self._sessions.update_one(
                {"_id": session_id, "deleted_at": None}, {"$set": {"share_token": token}}
            )
        except DuplicateKeyError as error:
            raise DuplicateKey("another session is shared under this token") from error
        return result.matched_count == 1

    @reachable
    def get_shared_session(self, token: str) -> dict | None:
        """Return the session shared under ``token``; ``None`` when none is or it was deleted."""
        document = self._sessions.find_one({"share_token": token, "deleted_at": None})
        return session_from(document) if document else None

    @reachable
    def purge_sessions(self, created_before: float, limit: int = 1000) -> int:
        """Delete for good up to ``limit`` sessions created before ``created_before``."""
        if limit < 1:
            return 0
        ids = [document["_id"] for document in self._sessions.find(
            {"created_at": {"$lt": created_before}}, projection={"_id": 1}
        ).sort("created_at").limit(limit)]
        return self._sessions.delete_many({"_id": {"$in": ids}}).deleted_count if ids else 0

    @reachable
    def record_delivery(self, session_id: str, delivery: dict) -> None:
        """Append one webhook delivery attempt to the session's ``deliveries``."""
        self._sessions.update_one({"_id": session_id}, {"$push": {"deliveries": delivery}})


def session_from(document: dict) -> dict:
    """Return a session document in the ``shared.records`` shape."""
    document.pop("created_on", None)
    return {"id": document.pop("_id"), **session_defaults(), **document}
