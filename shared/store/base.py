"""The repository interface that the API and the workers share, and what it promises.

Every method is one atomic step against the store. The conditional ones (claim, renew, finish,
cancel, append) are single conditional updates, so API processes and worker processes on any
number of hosts may call them at once without losing a write. Checkpoints are idempotent: the
first write of a member's answer (or a reviewer's ballot, or the synthesis) wins and later writes
of the same call are ignored, so a re-delivered task can never overwrite or duplicate them.
Checkpoints land only while the round is running: a finished round's result never changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from shared.records import RUNNING, TERMINAL

CLAIMED = "claimed"      # the caller now holds the round's lease, as attempt number `attempt`
BUSY = "busy"            # another worker holds an unexpired lease
FINISHED = "finished"    # the round is already terminal
EXHAUSTED = "exhausted"  # attempts ran out: the store has marked the round failed
MISSING = "missing"      # no such session or round

OUTCOME_FIELDS = frozenset({"aggregate", "notes", "error"})


class StoreUnavailable(RuntimeError):
    """The store could not be reached or did not answer in time."""


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
        """Return the whole session with its rounds, or ``None``."""

    def list_sessions(
        self, owner: str | None, limit: int, before: tuple[float, str] | None = None
    ) -> list[dict]:
        """Return up to ``limit`` sessions of ``owner`` (all when ``None``), newest first.

        ``before`` is the ``(created_at, id)`` of the last session of the previous page.
        """

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

    def stale_rounds(self, now: float, queued_before: float, limit: int = 100) -> list[
        tuple[str, int]
    ]:
        """Return rounds that need enqueuing again: last offered to the queue before
        ``queued_before`` and either still queued or running with ``lease_until`` before
        ``now`` (so an abandoned round is offered again at most once per sweep period)."""

    def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the store answers."""

    def close(self) -> None:
        """Release connections."""


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
