"""The repository interface that the API and the workers share, and what it promises.

Every method is one atomic step against the store. The conditional ones (claim, renew, finish,
cancel, append) are single conditional updates, so API processes and worker processes on any
number of hosts may call them at once without losing a write. Checkpoints are idempotent: the
first write of a member's answer (or a reviewer's ballot, or the synthesis) wins and later writes
of the same call are ignored, so a re-delivered task can never overwrite or duplicate them.
Checkpoints land only while the round is running: a finished round's result never changes.

A soft-deleted session is gone for every reader (get, list, shared view) and every client write;
only ``purge_sessions`` (or MongoDB's TTL index) removes it for good.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from shared.records import INTERACTIVE, PRIORITIES, RUNNING, SCOPES, TERMINAL

CLAIMED = "claimed"      # the caller now holds the round's lease, as attempt number `attempt`
BUSY = "busy"            # another worker holds an unexpired lease
FINISHED = "finished"    # the round is already terminal
EXHAUSTED = "exhausted"  # attempts ran out: the store has marked the round failed
MISSING = "missing"      # no such session or round

OUTCOME_FIELDS = frozenset({"aggregate", "notes", "error"})
EDITABLE_FIELDS = {"title": str, "pinned": bool}  # what ``update_session`` may change


class StoreUnavailable(RuntimeError):
    """The store could not be reached or did not answer in time."""


class DuplicateKey(ValueError):
    """Another record already holds this unique value (an API key hash, a share token)."""


@dataclass(frozen=True)
class SessionQuery:
    """Which sessions ``list_sessions`` returns; every field that is set must match.

    ``owner`` ``None`` means every owner; ``status`` is the session's (its last round's);
    ``text`` matches, ignoring case, anywhere in the title or in any round's question.
    """

    owner: str | None = None
    status: str | None = None
    pinned: bool | None = None
    text: str | None = None


@dataclass(frozen=True)
class Claim:
    """The outcome of trying to take a round's lease."""

    outcome: str
    attempt: int = 0
    round: dict | None = None


@dataclass(frozen=True)
class Lease:
    """The outcome of renewing a lease: is it still ours, and was a cancel asked for?"""

    held: bool
    cancel_requested: bool = False


class Store(Protocol):
    """A place to keep sessions (see ``shared.records`` for their shape)."""

    def create_session(self, session: dict) -> None:
        """Insert a new session with its rounds (a branched copy may carry several).

        Only the fields described in ``shared.records`` are kept; the top-level ``status`` is
        always the last round's.
        """

    def get_session(self, session_id: str) -> dict | None:
        """Return the whole session with its rounds; ``None`` when missing or deleted."""

    def list_sessions(
        self, query: SessionQuery, limit: int, after: tuple[bool, float, str] | None = None
    ) -> list[dict]:
        """Return up to ``limit`` whole sessions matching ``query``, never deleted ones.

        The order is pinned first, then newest first (``created_at``, then ``id``, descending).
        ``after`` is the ``(pinned, created_at, id)`` of the last session of the previous page;
        the next page starts right after it, so pages neither skip nor repeat a session.
        """

    def update_session(
        self, session_id: str, changes: Mapping[str, object], now: float
    ) -> dict | None:
        """Change ``title`` and/or ``pinned``, move ``updated_at`` to ``now``, return the session.

        ``None`` when the session is missing or deleted. Raises ``ValueError`` for any other
        field, or a value of the wrong type.
        """

    def delete_session(self, session_id: str, now: float) -> bool:
        """Soft-delete a session: set ``deleted_at``, clear ``share_token``, cancel its round.

        An unfinished last round is cancelled as ``request_cancel`` would (a queued one at once,
        a running one at its worker's next lease renewal), so nobody pays for a deleted session.
        False when the session is missing or already deleted.
        """

    def delete_sessions(self, owner: str | None, now: float) -> int:
        """Soft-delete every session of ``owner`` (of everyone when ``None``); return how many.

        Like ``delete_session`` for each of them, unfinished rounds included.
        """

    def set_share_token(self, session_id: str, token: str | None) -> bool:
        """Share a session under ``token`` (``None`` stops sharing) from now on.

        False when the session is missing or deleted. Raises ``DuplicateKey`` when another
        session holds the token. ``updated_at`` does not move.
        """

    def get_shared_session(self, token: str) -> dict | None:
        """Return the session shared under ``token``; ``None`` when none is, or it was deleted."""

    def purge_sessions(self, created_before: float, limit: int = 1000) -> int:
        """Delete for good up to ``limit`` sessions created before ``created_before``, deleted
        or not, with their rounds and calls; return how many."""

    def record_delivery(self, session_id: str, delivery: dict) -> None:
        """Append one webhook delivery attempt to the session's ``deliveries``.

        One targeted write; ``updated_at`` does not move (the session's content is unchanged).
        Nothing happens when the session does not exist.
        """

    def begin_idempotent(
        self, owner: str, key: str, fingerprint: str, now: float, *,
        reclaim_after: float | None = None,
    ) -> dict | None:
        """Reserve ``(owner, key)`` atomically: ``None`` when this call reserved it.

        Otherwise return the existing record (see ``shared.records``); its ``status`` is
        ``None`` while the first request is still in flight. With ``reclaim_after``, a record
        still in flight although created more than ``reclaim_after`` seconds before ``now``
        (its request died) is taken over by this call, which then also returns ``None``.
        """

    def finish_idempotent(
        self, owner: str, key: str, status: int, body: dict, headers: dict
    ) -> None:
        """Record the answer to replay for a reserved key (the first answer stays)."""

    def release_idempotent(self, owner: str, key: str) -> None:
        """Forget ``(owner, key)``: a reservation whose request failed before creating anything,
        or a record past its lifetime that no sweep has deleted yet."""

    def purge_idempotency(self, created_before: float) -> int:
        """Delete idempotency records created before ``created_before``; return how many."""

    def create_api_key(self, key: dict) -> None:
        """Store an API key record (``shared.records``: its hash, never the key).

        Raises ``DuplicateKey`` when the id or the hash exists, ``ValueError`` for an unknown
        scope or priority.
        """

    def find_api_key(self, key_hash: str) -> dict | None:
        """Return the key with this hash, revoked or not (the caller checks ``revoked_at``)."""

    def list_api_keys(self) -> list[dict]:
        """Return every API key, revoked ones included, oldest first."""

    def revoke_api_key(self, key_id: str, now: float) -> bool:
        """Set ``revoked_at``; False when the key is missing or already revoked."""

    def append_round(self, session_id: str, round_: dict) -> bool:
        """Add a follow-up round; refuse (False) unless the last round is terminal and
        ``round_["round_no"]`` is the next number."""

    def claim_round(
        self, session_id: str, round_no: int, now: float, lease_until: float, max_attempts: int
    ) -> Claim:
        """Take the round if it is queued, or running with a lease that expired before ``now``.

        Taking it sets status running, ``lease_until``, ``started_at`` (first time) and
        increments ``attempts``. When ``attempts`` already reached ``max_attempts`` the round
        is marked failed instead and ``EXHAUSTED`` returned.
        """

    def renew_lease(
        self, session_id: str, round_no: int, attempt: int, lease_until: float,
        stage: str | None = None,
    ) -> Lease:
        """Extend the lease held as ``attempt`` (and record the stage); report cancel requests.

        The lease is held while the round is running as ``attempt``, even past ``lease_until``
        if nobody has claimed it since.
        """

    def save_answer(self, session_id: str, round_no: int, answer: dict) -> None:
        """Checkpoint one member's answer (first write wins; ignored unless the round runs)."""

    def save_ballot(self, session_id: str, round_no: int, ballot: dict) -> None:
        """Checkpoint one reviewer's ballot (first write wins; ignored unless the round runs)."""

    def save_synthesis(self, session_id: str, round_no: int, synthesis: dict) -> None:
        """Checkpoint the chairman's synthesis (first write wins; ignored unless the round runs)."""

    def finish_round(
        self, session_id: str, round_no: int, attempt: int, status: str, outcome: dict
    ) -> bool:
        """End a running round held as ``attempt`` with a terminal status.

        ``outcome`` may set ``aggregate``, ``notes`` and ``error``. Returns False (and changes
        nothing) when the lease is no longer ours or the round is not running. Raises
        ``ValueError`` for a status that is not terminal or an unknown outcome field.
        """

    def request_cancel(self, session_id: str, round_no: int, now: float) -> str | None:
        """Cancel a queued round at once, or flag a running one; return the status after.

        Terminal rounds are left as they are. ``None`` when there is no such round.
        """

    def touch_queued(self, session_id: str, round_no: int, now: float) -> None:
        """Record that an unfinished round was (re-)offered to the queue at ``now``."""

    def stale_rounds(
        self, now: float, queued_before: float, limit: int = 100,
        reoffer_before: float | None = None,
    ) -> list[tuple[str, int]]:
        """Return rounds that need enqueuing again.

        Queued rounds last offered to the queue before ``queued_before`` (a message may have
        been lost), and running rounds whose lease expired before ``now`` (their worker died),
        last offered before ``reoffer_before`` (default ``queued_before``), so an abandoned
        round is offered again at most once per period. ``touch_queued(..., 0.0)`` marks a
        round whose enqueue failed, so the next sweep offers it at once.
        """

    def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the store answers."""

    def close(self) -> None:
        """Release connections."""


def check_changes(changes: Mapping[str, object]) -> None:
    """Raise ``ValueError`` unless ``update_session`` may apply these changes."""
    for name, value in changes.items():
        kind = EDITABLE_FIELDS.get(name)
        if kind is None:
            raise ValueError(f"a session's {name!r} cannot be changed")
        if not isinstance(value, kind):
            raise ValueError(f"{name} must be a {kind.__name__}, not {value!r}")


def check_api_key(key: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` unless the API key record has a known scope and priority."""
    if key["scope"] not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}, not {key['scope']!r}")
    if key.get("priority", INTERACTIVE) not in PRIORITIES:
        raise ValueError(f"priority must be one of {', '.join(PRIORITIES)}")


def check_finish(status: str, outcome: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` unless ``finish_round`` may record this status and outcome."""
    if status not in TERMINAL:
        raise ValueError(f"a round cannot finish as {status!r}")
    unknown = set(outcome) - OUTCOME_FIELDS
    if unknown:
        raise ValueError(f"unknown outcome fields: {', '.join(sorted(unknown))}")


def claim_refusal(round_: Mapping[str, Any] | None, now: float, max_attempts: int) -> str | None:
    """Say why a claim did not take this round, or ``None`` if it may be claimable now.

    ``None`` means the round changed between the refused claim and this read: claim again.
    """
    if round_ is None:
        return MISSING
    if round_["status"] in TERMINAL:
        return FINISHED
    lease_until = round_["lease_until"]
    if round_["status"] == RUNNING and (lease_until is None or lease_until >= now):
        return BUSY
    return EXHAUSTED if round_["attempts"] >= max_attempts else None
