"""The council's aggregate ranking: where each member stands across the valid ballots."""

from __future__ import annotations

import math
from collections.abc import Iterable


def aggregate_rankings(members: list[str], ballots: list[dict]) -> list[dict]:
    """Return one standing per member from the valid ballots, best mean rank first.

    A member's mean rank is its average 1-based position on the valid ballots that ranked it.
    Ties go to the member ranked by more ballots, then to the smaller member id; members that
    no valid ballot ranked come last, with ``mean_rank`` and ``disagreement`` of ``None``.
    """
    ranks: dict[str, list[tuple[int, int]]] = {member: [] for member in members}
    for ballot in ballots:
        if not _counts(ballot):
            continue
        ranking = ballot["ranking"]
        for position, member in enumerate(ranking, start=1):
            if member in ranks:
                ranks[member].append((position, len(ranking)))
    standings = [_standing(member, received) for member, received in ranks.items()]
    return sorted(standings, key=_order)


def disagreement(ranks: Iterable[tuple[int, int]]) -> float:
    """Return how far reviewers disagree about one member, from 0 (agree) to 1 (split).

    ``ranks`` holds (rank, ballot size) pairs. Each rank r on a ballot of n answers becomes a
    relative position p = (r - 1) / (n - 1), 0 for best and 1 for worst; ballots of a single
    answer express no preference and are left out. The result is the population standard
    deviation of the k positions divided by the largest it can be for k values in [0, 1],
    sqrt(floor(k / 2) * ceil(k / 2)) / k (half the ballots put the member first, half last).
    It is 0 when fewer than two positions remain, and 1 only for that even split.
    """
    positions = [(rank - 1) / (size - 1) for rank, size in ranks if size > 1]
    count = len(positions)
    if count < 2:
        return 0.0
    mean = sum(positions) / count
    spread = math.sqrt(sum((p - mean) ** 2 for p in positions) / count)
    widest = math.sqrt((count // 2) * (count - count // 2)) / count
    return round(min(1.0, spread / widest), 6)


def _counts(ballot: dict) -> bool:
    return ballot.get("valid") is True and isinstance(ballot.get("ranking"), list)


def _standing(member: str, ranks: list[tuple[int, int]]) -> dict:
    if not ranks:
        return {"member": member, "mean_rank": None, "ballots": 0, "disagreement": None}
    return {
        "member": member,
        "mean_rank": sum(rank for rank, _ in ranks) / len(ranks),
        "ballots": len(ranks),
        "disagreement": disagreement(ranks),
    }


def _order(standing: dict) -> tuple:
    unranked = standing["mean_rank"] is None
    return (unranked, standing["mean_rank"] or 0.0, -standing["ballots"], standing["member"])
