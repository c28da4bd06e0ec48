"""The rules a round runs under: its deadlines, its quorums, and who stands in for the chairman."""

from __future__ import annotations

from dataclasses import dataclass

from shared.settings import Settings


@dataclass(frozen=True)
class RoundPolicy:
    """Deadlines (seconds), default quorums, and the chairman's stand-ins, in order.

    A stage that reaches ``stage_deadline_s`` goes on with what it has; no call starts after
    ``round_deadline_s`` from the round's first claim. ``min_answers`` answers are needed to rank
    them, ``min_ballots`` valid ballots to aggregate a ranking; a session may ask for others.
    """

    stage_deadline_s: float = 180.0
    round_deadline_s: float = 600.0
    min_answers: int = 2
    min_ballots: int = 1
    chairman_fallbacks: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> RoundPolicy:
        """Return the policy the settings describe."""
        return cls(
            stage_deadline_s=settings.stage_deadline_s,
            round_deadline_s=settings.round_deadline_s,
            min_answers=settings.council_min_answers,
            min_ballots=settings.council_min_ballots,
            chairman_fallbacks=settings.roster.chairman_fallbacks,
        )

    def chairmen(self, chairman: str) -> list[str]:
        """Return who may write the final answer, in order: the chairman, then its stand-ins."""
        return [chairman, *(model for model in self.chairman_fallbacks if model != chairman)]
