"""Keep sessions in MongoDB: one document per session, its rounds embedded in order.

Round ``n`` lives at ``rounds.{n-1}``, so every checkpoint and every conditional step is one
``update_one`` (or ``find_one_and_update``) whose filter states the condition, addressed by that
path. Single-document updates are atomic, so no multi-document transaction is needed. Every
change of a round's status also sets the session's top-level ``status`` (the last round's) and
moves ``updated_at`` forward.

Indexes, TTL expiry and migrations live in ``mongo_schema``; editing, deleting and sharing whole
sessions in ``mongo_admin``; idempotency records and API keys in ``mongo_keys``.
"""

from __future__ import annotations

import re
import time

import pymongo
from pymongo import DESCENDING, ReturnDocument

from shared.records import (
    CANCELLED,
    FAILED,
    QUEUED,
    RUNNING,
    SESSION_DEFAULTS,
    TERMINAL,
    session_defaults,
)
from shared.store.base import (
    BUSY,
    CLAIMED,
    EXHAUSTED,
    Claim,
    Lease,
    SessionQuery,
    check_finish,
    claim_refusal,
)
from shared.store.mongo_admin import SessionAdmin, session_from
from shared.store.mongo_errors import reachable as _reachable
from shared.store.mongo_keys import KeyRecords
from shared.store.mongo_schema import bson_date, ensure_indexes, keep_sessions_for, migrate

SESSION_FIELDS = (
    "owner", "title", "created_at", "updated_at", "members", "chairman", "rounds",
    *SESSION_DEFAULTS,
)
LISTING_ORDER = [("pinned", DESCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)]
CLAIM_TRIES = 3  # a refused claim re-reads; only a round changing under us needs another try


class MongoStore(SessionAdmin, KeyRecords):
    """A ``Store`` in a MongoDB database, shared by every process of the fleet.

    With ``retention_s`` MongoDB itself deletes sessions that long after their creation (a TTL
    index); without it an existing TTL index is dropped and sessions are kept.
    """

    @_reachable
    def __init__(
        self, client: pymongo.MongoClient, database: str, retention_s: float | None = None
    ) -> None:
        self._client = client
        self._db = client[database]
        self._sessions = self._db["sessions"]
        self.ensure_indexes()
        migrate(self._db)
        keep_sessions_for(self._db, retention_s)

    def ensure_indexes(self) -> None:
        """Create the indexes the queries rely on (a no-op when they exist)."""
        ensure_indexes(self._db)

    # Sessions.

    @_reachable
    def create_session(self, session: dict) -> None:
        """Insert a new session with its rounds."""
        fields = {**session_defaults(), **session}
        document = {"_id": session["id"], **{name: fields[name] for name in SESSION_FIELDS}}
        document["status"] = session["rounds"][-1]["status"]
        document["created_on"] = bson_date(session["created_at"])  # what the TTL index reads
        self._sessions.insert_one(document)

    @_reachable
    def get_session(self, session_id: str) -> dict | None:
        """Return the whole session with its rounds; ``None`` when missing or deleted."""
        document = self._sessions.find_one({"_id": session_id, "deleted_at": None})
        return session_from(document) if document else None

    @_reachable
    def list_sessions(
        self, query: SessionQuery, limit: int, after: tuple[bool, float, str] | None = None
    ) -> list[dict]:
        """Return up to ``limit`` sessions matching ``query``: pinned first, then newest first."""
        if limit < 1:
            return []  # limit(0) means no limit to MongoDB
        conditions: list[dict] = [{"deleted_at": None}]
        conditions += [
            {name: getattr(query, name)} for name in ("owner", "status", "pinned")
            if getattr(query, name) is not None
        ]
        if query.text:
            pattern = {"$regex": re.escape(query.text), "$options": "i"}
            conditions.append({"$or": [{"title": pattern}, {"rounds.question": pattern}]})
        if after is not None:
            conditions.append({"$or": _after(*after)})
        cursor = self._sessions.find({"$and": conditions}).sort(LISTING_ORDER).limit(limit)
        return [session_from(document) for document in cursor]

    # Rounds.

    @_reachable
    def append_round(self, session_id: str, round_: dict) -> bool:
        """Add a follow-up round unless the last round is unfinished or the number is wrong."""
        previous = round_["round_no"] - 1
        if previous < 1:
            return False
        result = self._sessions.update_one(
            {
                "_id": session_id,
                "rounds": {"$size": previous},
                f"rounds.{previous - 1}.status": {"$in": sorted(TERMINAL)},
            },
            {
                "$push": {"rounds": round_},
                "$set": {"status": round_["status"]},
                "$max": {"updated_at": round_["created_at"]},
            },
        )
        return result.matched_count == 1

    @_reachable
    def claim_round(
        self, session_id: str, round_no: int, now: float, lease_until: float, max_attempts: int
    ) -> Claim:
        """Take the round if it is queued or its lease expired; see ``Store.claim_round``."""
        for _ in range(CLAIM_TRIES):
            round_ = self._take(session_id, round_no, now, lease_until, max_attempts)
            if round_ is not None:
                return Claim(CLAIMED, round_["attempts"], round_)
            outcome = claim_refusal(self._round(session_id, round_no), now, max_attempts)
            if outcome == EXHAUSTED and not self._give_up(session_id, round_no, now, max_attempts):
                continue
            if outcome is not None:
                return Claim(outcome)
        return Claim(BUSY)

    def _take(
        self, session_id: str, round_no: int, now: float, lease_until: float, max_attempts: int
    ) -> dict | None:
        """Claim with one conditional update; set ``started_at`` only on the first attempt."""
        at = f"rounds.{round_no - 1}"
        query = {
            **_round_key(session_id, round_no),
            f"{at}.attempts": {"$lt": max_attempts},
            "$or": _claimable(at, now),
        }
        changes = {f"{at}.status": RUNNING, f"{at}.lease_until": lease_until, "status": RUNNING}
        update = {
            "$set": changes, "$inc": {f"{at}.attempts": 1}, "$max": {"updated_at": now}
        }
        first_claim = (
            {**query, f"{at}.started_at": None},
            {**update, "$set": {**changes, f"{at}.started_at": now}},
        )
        for claim_query, claim_update in (first_claim, (query, update)):
            document = self._sessions.find_one_and_update(
                claim_query, claim_update,
                projection={"rounds": {"$slice": [round_no - 1, 1]}},
                return_document=ReturnDocument.AFTER,
            )
            if document is not None:
                return document["rounds"][0]
        return None

    def _give_up(self, session_id: str, round_no: int, now: float, max_attempts: int) -> bool:
        """Mark a round failed whose attempts ran out; False if it changed meanwhile."""
        at = f"rounds.{round_no - 1}"
        result = self._sessions.update_one(
            {
                **_round_key(session_id, round_no),
                f"{at}.attempts": {"$gte": max_attempts},
                "$or": _claimable(at, now),
            },
            {
                "$set": {
                    f"{at}.status": FAILED, f"{at}.lease_until": None, f"{at}.finished_at": now,
                    f"{at}.error": f"no worker finished the round within {max_attempts} attempts",
                    "status": FAILED,
                },
                "$max": {"updated_at": now},
            },
        )
        return result.matched_count == 1

    @_reachable
    def renew_lease(
        self, session_id: str, round_no: int, attempt: int, lease_until: float,
        stage: str | None = None,
    ) -> Lease:
        """Extend the lease held as ``attempt`` (and record the stage); report cancel requests."""
        at = f"rounds.{round_no - 1}"
        update: dict = {"$set": {f"{at}.lease_until": lease_until}}
        if stage is not None:
            update["$set"][f"{at}.stage"] = stage
            update["$max"] = {"updated_at": time.time()}
        document = self._sessions.find_one_and_update(
            _held(session_id, round_no, attempt),
            update,
            projection={"_id": 0, "rounds.cancel_requested": 1},
        )
        if document is None:
            return Lease(held=False)
        flag = document["rounds"][round_no - 1]["cancel_requested"]
        return Lease(held=True, cancel_requested=flag)

    @_reachable
    def finish_round(
        self, session_id: str, round_no: int, attempt: int, status: str, outcome: dict
    ) -> bool:
        """End a running round held as ``attempt``; False when the lease is not ours."""
        check_finish(status, outcome)
        at = f"rounds.{round_no - 1}"
        now = time.time()
        changes = {f"{at}.{name}": value for name, value in outcome.items()}
        changes.update(
            {f"{at}.status": status, f"{at}.finished_at": now, f"{at}.lease_until": None,
             "status": status}
        )
        result = self._sessions.update_one(
            _held(session_id, round_no, attempt),
            {"$set": changes, "$max": {"updated_at": now}},
        )
        return result.matched_count == 1

    @_reachable
    def request_cancel(self, session_id: str, round_no: int, now: float) -> str | None:
        """Cancel a queued round at once, or flag a running one; return the status after."""
        at = f"rounds.{round_no - 1}"
        key = _round_key(session_id, round_no)
        cancelled = self._sessions.update_one(
            {**key, f"{at}.status": QUEUED},
            {
                "$set": {
                    f"{at}.status": CANCELLED, f"{at}.cancel_requested": True,
                    f"{at}.finished_at": now, "status": CANCELLED,
                },
                "$max": {"updated_at": now},
            },
        )
        if cancelled.matched_count:
            return CANCELLED
        flagged = self._sessions.update_one(
            {**key, f"{at}.status": RUNNING},
            {"$set": {f"{at}.cancel_requested": True}, "$max": {"updated_at": now}},
        )
        if flagged.matched_count:
            return RUNNING
        round_ = self._round(session_id, round_no)
        return round_["status"] if round_ else None

    @_reachable
    def touch_queued(self, session_id: str, round_no: int, now: float) -> None:
        """Record that an unfinished round was (re-)offered to the queue at ``now``."""
        at = f"rounds.{round_no - 1}"
        self._sessions.update_one(
            {**_round_key(session_id, round_no), f"{at}.status": {"$in": [QUEUED, RUNNING]}},
            {"$set": {f"{at}.queued_at": now}},
        )

    @_reachable
    def stale_rounds(
        self, now: float, queued_before: float, limit: int = 100,
        reoffer_before: float | None = None,
    ) -> list[tuple[str, int]]:
        """Return rounds to enqueue again (see ``Store.stale_rounds``)."""
        reoffer_before = queued_before if reoffer_before is None else reoffer_before
        if limit < 1:
            return []
        late = {"status": QUEUED, "queued_at": {"$lt": queued_before}}
        expired = {"status": RUNNING, "lease_until": {"$lt": now},
                   "queued_at": {"$lt": reoffer_before}}
        cursor = self._sessions.find(
            {
                "status": {"$in": [QUEUED, RUNNING]},
                "$or": [{"rounds": {"$elemMatch": late}}, {"rounds": {"$elemMatch": expired}}],
            },
            projection={f"rounds.{name}": 1 for name in ("round_no", "status", "queued_at",
                                                          "lease_until")},
        ).limit(limit)
        stale = [
            (document["_id"], round_["round_no"])
            for document in cursor
            for round_ in document["rounds"]
            if _is_stale(round_, now, queued_before, reoffer_before)
        ]
        return stale[:limit]

    # Checkpoints.

    @_reachable
    def save_answer(self, session_id: str, round_no: int, answer: dict) -> None:
        """Checkpoint one member's answer (first write wins)."""
        self._push_call(session_id, round_no, "answers", "member", answer)

    @_reachable
    def save_ballot(self, session_id: str, round_no: int, ballot: dict) -> None:
        """Checkpoint one reviewer's ballot (first write wins)."""
        self._push_call(session_id, round_no, "ballots", "reviewer", ballot)

    @_reachable
    def save_synthesis(self, session_id: str, round_no: int, synthesis: dict) -> None:
        """Checkpoint the chairman's synthesis (first write wins)."""
        at = f"rounds.{round_no - 1}"
        self._sessions.update_one(
            {**_round_key(session_id, round_no), f"{at}.status": RUNNING, f"{at}.synthesis": None},
            {"$set": {f"{at}.synthesis": synthesis}, "$max": {"updated_at": time.time()}},
        )

    def _push_call(
        self, session_id: str, round_no: int, field: str, caller: str, call: dict
    ) -> None:
        at = f"rounds.{round_no - 1}"
        self._sessions.update_one(
            {
                **_round_key(session_id, round_no),
                f"{at}.status": RUNNING,
                f"{at}.{field}.{caller}": {"$ne": call[caller]},
            },
            {"$push": {f"{at}.{field}": call}, "$max": {"updated_at": time.time()}},
        )

    # Connections.

    @_reachable
    def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the database answers."""
        self._db.command("ping")

    def close(self) -> None:
        """Close the client's connections."""
        self._client.close()

    def _round(self, session_id: str, round_no: int) -> dict | None:
        document = self._sessions.find_one(
            _round_key(session_id, round_no),
            projection={"rounds": {"$slice": [round_no - 1, 1]}},
        )
        return document["rounds"][0] if document else None


def _round_key(session_id: str, round_no: int) -> dict:
    """Match the session only if it has round ``round_no`` (a missing path matches null)."""
    return {"_id": session_id, f"rounds.{round_no - 1}.round_no": round_no}


def _held(session_id: str, round_no: int, attempt: int) -> dict:
    """Match the round only while it runs as ``attempt``: the lease holder's filter."""
    at = f"rounds.{round_no - 1}"
    return {**_round_key(session_id, round_no), f"{at}.status": RUNNING, f"{at}.attempts": attempt}


def _claimable(at: str, now: float) -> list[dict]:
    return [{f"{at}.status": QUEUED}, {f"{at}.status": RUNNING, f"{at}.lease_until": {"$lt": now}}]


def _is_stale(round_: dict, now: float, queued_before: float, reoffer_before: float) -> bool:
    if round_["status"] == QUEUED:
        return round_["queued_at"] < queued_before
    lease_until = round_.get("lease_until")
    return (round_["status"] == RUNNING and lease_until is not None and lease_until < now
            and round_["queued_at"] < reoffer_before)


def _after(pinned: bool, created_at: float, session_id: str) -> list[dict]:
    """Match what the listing order puts after ``(pinned, created_at, id)``."""
    pinned = bool(pinned)  # a stored boolean never equals the number 1
    later = [
        {"pinned": pinned, "created_at": {"$lt": created_at}},
        {"pinned": pinned, "created_at": created_at, "_id": {"$lt": session_id}},
    ]
    return [{"pinned": False}, *later] if pinned else later
