"""The repository interface that the API and the workers share, and what it promises.

Every method is one atomic step against the store. The conditional ones (claim, renew, finish,
cancel, append) are single conditional updates, so API processes and worker processes on any
number of hosts may call them at once without losing a write. Checkpoints are idempotent: the
first write of a member's answer (or a reviewer's ballot, or the synthesis) wins and later writes
of the same call are ignored, so a re-delivered task can never overwrite or duplicate them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

CLAIMED = "claimed"      # the caller now holds the round's lease, as attempt number `attempt`
BUSY = "busy"            # another worker holds an unexpired lease
FINISHED = "finished"    # the round is already terminal
EXHAUSTED = "exhausted"  # attempts ran out: the store has marked the round failed
MISSING = "missing"      # no such session or round


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
        """Insert a new session with its first round."""

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
        """Extend the lease held as ``attempt`` (and record the stage); report cancel requests."""

    def save_answer(self, session_id: str, round_no: int, answer: dict) -> None:
        """Checkpoint one member's answer (first write wins)."""

    def save_ballot(self, session_id: str, round_no: int, ballot: dict) -> None:
        """Checkpoint one reviewer's ballot (first write wins)."""

    def save_synthesis(self, session_id: str, round_no: int, synthesis: dict) -> None:
        """Checkpoint the chairman's synthesis (first write wins)."""

    def finish_round(
        self, session_id: str, round_no: int, attempt: int, status: str, outcome: dict
    ) -> bool:
        """End a running round held as ``attempt`` with a terminal status.

        ``outcome`` may set ``aggregate``, ``notes`` and ``error``. Returns False (and changes
        nothing) when the lease is no longer ours or the round is not running.
        """

    def request_cancel(self, session_id: str, round_no: int, now: float) -> str | None:
        """Cancel a queued round at once, or flag a running one; return the status after.

        Terminal rounds are left as they are. ``None`` when there is no such round.
        """

    def touch_queued(self, session_id: str, round_no: int, now: float) -> None:
        """Record that a queued round was (re-)enqueued at ``now``."""

    def stale_rounds(self, now: float, queued_before: float, limit: int = 100) -> list[
        tuple[str, int]
    ]:
        """Return rounds that need enqueuing again: queued with ``queued_at`` before
        ``queued_before``, or running with ``lease_until`` before ``now``."""

    def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the store answers."""

    def close(self) -> None:
        """Release connections."""
