"""The three stages of a round, with their deadlines, quorums and fallbacks.

Each stage ends by its deadline with what it has: a call still running then is recorded as timed
out. Members whose answers or ballots are lost, rankings skipped or not aggregated for want of a
quorum, and a chairman replaced by a stand-in all leave a note; a round with notes ends
``degraded``, so the final answer is never presented as the full council's when it is not.
"""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING

from shared import records
from shared.council.aggregate import aggregate_rankings
from shared.council.ballots import assign_labels, failed_ballot, make_ballot
from shared.council.prompts import (
    answer_messages,
    ballot_correction_messages,
    ranking_messages,
    synthesis_messages,
)

if TYPE_CHECKING:
    from shared.council.run import RoundConductor

USAGE_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens", "cost")


async def conduct_stages(round_: RoundConductor) -> tuple[str, dict]:
    """Run answers, rankings and synthesis; return the round's terminal status and outcome."""
    plan = round_.plan
    await round_.enter("answers")
    answers = await gather_answers(round_)
    answered = [m for m in plan.members if answers[m]["content"] is not None]
    notes = [
        f"{round_.name(m)} did not answer: {answers[m]['error']}"
        for m in plan.members
        if m not in answered
    ]
    if not answered:
        return records.FAILED, {"notes": notes, "error": "no council member answered"}
    standings = await rank_answers(round_, answered, notes)
    await round_.enter("synthesis")
    synthesis = await synthesise(round_, answers, answered, standings, notes)
    outcome = {"aggregate": standings, "notes": notes}
    if synthesis["content"] is None:
        return records.FAILED, {**outcome, "error": synthesis["error"]}
    if synthesis["model"] != plan.chairman:
        notes.append(f"{round_.name(synthesis['model'])} wrote the final answer in place of "
                     f"the chairman {round_.name(plan.chairman)}, which failed: "
                     f"{synthesis['stand_in_for']['error']}")
    return (records.DEGRADED if notes else records.COMPLETED), outcome


# Stage 1 -----------------------------------------------------------------------------------

async def gather_answers(round_: RoundConductor) -> dict[str, dict]:
    """Ask every member that has not answered yet; return every member's answer record."""
    plan = round_.plan
    missing = [m for m in plan.members if m not in plan.answers]
    messages = answer_messages(plan.question, plan.history)
    deadline = round_.stage_deadline()
    await asyncio.gather(*(answer(round_, member, messages, deadline) for member in missing))
    return plan.answers


def answer_record(member: str, completion, error: str | None, latency_ms: int) -> dict:
    """Return the stored form of a member's answer (or of why there is none)."""
    return {
        "member": member,
        "content": completion.content if completion else None,
        "error": error,
        "usage": completion.usage if completion else None,
        "latency_ms": latency_ms,
    }


async def answer(round_: RoundConductor, member: str, messages: list[dict], deadline: float):
    """Ask one member and checkpoint its answer (or why there is none)."""
    completion, error, latency_ms = await round_.call(member, messages, deadline)
    record = answer_record(member, completion, error, latency_ms)
    await round_.checkpoint(round_.store.save_answer, record)
    round_.plan.answers[member] = record
    round_.emit("answer", {"member": member, "ok": error is None})


# Stage 2 -----------------------------------------------------------------------------------

async def rank_answers(round_: RoundConductor, answered: list[str], notes: list[str]) -> list:
    """Collect ballots when enough members answered; return the standings (ranked or not)."""
    plan = round_.plan
    if len(answered) < plan.min_answers:
        notes.append(f"rankings skipped: fewer than {plan.min_answers} members answered")
        return aggregate_rankings(answered, [])
    await round_.enter("rankings")
    ballots = await gather_ballots(round_, answered)
    notes.extend(
        f"ballot from {round_.name(reviewer)} not counted: {ballot['error']}"
        for reviewer, ballot in ballots.items()
        if not ballot["valid"]
    )
    valid = [ballot for ballot in ballots.values() if ballot["valid"]]
    if len(valid) < plan.min_ballots:
        notes.append(f"ranking not aggregated: {len(valid)} valid ballot(s), fewer than the "
                     f"{plan.min_ballots} needed")
        return aggregate_rankings(answered, [])
    return aggregate_rankings(answered, valid)


async def gather_ballots(round_: RoundConductor, answered: list[str]) -> dict[str, dict]:
    """Ask every member that answered, and has not voted yet, to rank the others' answers."""
    plan = round_.plan
    missing = [m for m in answered if m not in plan.ballots]
    deadline = round_.stage_deadline()
    await asyncio.gather(*(ballot(round_, r, answered, deadline) for r in missing))
    return {m: plan.ballots[m] for m in answered}


async def ballot(round_: RoundConductor, reviewer: str, answered: list[str], deadline: float):
    """Ask one reviewer for a ranking, once more if it was unusable; checkpoint the ballot."""
    plan = round_.plan
    rng = random.Random(f"{plan.session_id}:{plan.round_no}:{reviewer}")
    labels = assign_labels(answered, reviewer, rng)
    shown = {label: plan.answers[member]["content"] for label, member in labels.items()}
    completion, error, latency_ms = await round_.call(
        reviewer, ranking_messages(plan.question, shown), deadline)
    if completion is None:
        record = failed_ballot(reviewer, labels, error, latency_ms)
    else:
        record = make_ballot(reviewer, labels, completion.content, completion.usage, latency_ms)
        if not record["valid"]:
            record = await _repair(round_, record, shown, deadline)
    await round_.checkpoint(round_.store.save_ballot, record)
    plan.ballots[reviewer] = record
    round_.emit("ballot", {"reviewer": reviewer, "valid": record["valid"]})


async def _repair(round_: RoundConductor, first: dict, shown: dict, deadline: float) -> dict:
    """Ask the reviewer once, briefly, for only the ranking; return the better ballot."""
    messages = ballot_correction_messages(round_.plan.question, shown, first["raw"],
                                          first["error"])
    completion, error, latency_ms = await round_.call(first["reviewer"], messages, deadline)
    latency_ms += first["latency_ms"]
    if completion is None:
        return {**first, "latency_ms": latency_ms,
                "error": f"{first['error']}; the request for a correction failed: {error}"}
    usage = _add_usage(first["usage"], completion.usage)
    second = make_ballot(first["reviewer"], first["labels"], completion.content, usage, latency_ms)
    if not second["valid"]:
        second["error"] = f"{first['error']}; after a correction: {second['error']}"
    return {**second, "repaired": second["valid"]}


# Stage 3 -----------------------------------------------------------------------------------

async def synthesise(
    round_: RoundConductor, answers: dict, answered: list[str], standings: list[dict],
    notes: list[str],
) -> dict:
    """Have the chairman, or failing it each stand-in in turn, write the final answer."""
    plan = round_.plan
    if plan.synthesis is not None:
        return plan.synthesis
    by_name = {round_.name(m): answers[m]["content"] for m in answered}
    named = [{**s, "member": round_.name(s["member"])} for s in standings]
    messages = synthesis_messages(plan.question, by_name, named, plan.history, notes)
    deadline = round_.stage_deadline()
    failures: list[tuple[str, str]] = []
    for chairman in round_.council.policy.chairmen(plan.chairman):
        completion, error, latency_ms = await round_.call(chairman, messages, deadline)
        if completion is not None:
            break
        failures.append((chairman, error))
    synthesis = {
        "model": chairman if completion else plan.chairman,
        "content": completion.content if completion else None,
        "error": None if completion else _chairmen_failed(round_, failures),
        "usage": completion.usage if completion else None,
        "latency_ms": latency_ms,
        "stand_in_for": _stood_in(plan.chairman, failures) if completion and failures else None,
    }
    await round_.checkpoint(round_.store.save_synthesis, synthesis)
    plan.synthesis = synthesis
    round_.emit("synthesis", {"model": synthesis["model"], "ok": completion is not None})
    return synthesis


def _chairmen_failed(round_: RoundConductor, failures: list[tuple[str, str]]) -> str:
    parts = [f"{'chairman' if n == 0 else 'stand-in'} {round_.name(model)} failed: {error}"
             for n, (model, error) in enumerate(failures)]
    return "; ".join(parts)


def _stood_in(chairman: str, failures: list[tuple[str, str]]) -> dict:
    """Describe whom the stand-in replaced and why (the chairman's own failure)."""
    return {"chairman": chairman, "error": dict(failures)[chairman],
            "failed": [{"model": model, "error": error} for model, error in failures]}


# Helpers -----------------------------------------------------------------------------------

def _add_usage(first: dict | None, second: dict | None) -> dict:
    first, second = first or {}, second or {}
    total = {key: first.get(key, 0) + second.get(key, 0) for key in USAGE_KEYS[:3]}
    if "cost" in first or "cost" in second:
        total["cost"] = first.get("cost", 0.0) + second.get("cost", 0.0)
    return total
