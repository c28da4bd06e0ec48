"""Conduct one council round: answers, then rankings, then the chairman's synthesis.

Every call's result is checkpointed the moment it returns, so a round that is re-delivered after
a crash makes only the calls that were still in flight. While the round runs, a watcher renews
its lease; when a cancel is requested or the lease is lost the work in flight is cancelled.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from shared import records
from shared.council.aggregate import aggregate_rankings
from shared.council.ballots import assign_labels, failed_ballot, make_ballot
from shared.council.prompts import answer_messages, ranking_messages, synthesis_messages
from shared.provider.client import Completion
from shared.provider.errors import PoolExhausted, ProviderError
from shared.roster import Model, Roster
from shared.store.base import CLAIMED, Store

log = logging.getLogger(__name__)

MIN_ANSWERS_FOR_RANKINGS = 2
CALL_ERRORS = (ProviderError, PoolExhausted)
LEASE_LOST = "lease_lost"


class Provider:
    """What a round needs from the provider client (``shared.provider.client.ProviderClient``)."""

    async def complete(self, model: Model, messages: list[dict]) -> Completion:
        raise NotImplementedError


@dataclass(frozen=True)
class Council:
    """The services one worker process lends to every round it conducts."""

    store: Store
    provider: Provider
    roster: Roster
    lease_s: float
    max_attempts: int
    watch_interval_s: float | None = None
    on_event: Callable[[str, int, str, dict], None] = lambda session_id, round_no, kind, data: None

    @property
    def watch_every_s(self) -> float:
        """Return how often a running round re-checks its lease and cancel flag."""
        return self.watch_interval_s or self.lease_s / 3


@dataclass
class RoundPlan:
    """One claimed round: what to ask, of whom, and what is already checkpointed."""

    session_id: str
    round_no: int
    attempt: int
    question: str
    members: list[str]
    chairman: str
    history: list[dict]
    answers: dict[str, dict] = field(default_factory=dict)
    ballots: dict[str, dict] = field(default_factory=dict)
    synthesis: dict | None = None


class LeaseLost(Exception):
    """Another worker took the round over; this one must stop without writing."""


class CancelRequested(Exception):
    """A client asked to cancel the round."""


async def execute_round(council: Council, session_id: str, round_no: int) -> str:
    """Claim a round and conduct it to a terminal state; return what happened to it."""
    now = time.time()
    claim = await asyncio.to_thread(
        council.store.claim_round, session_id, round_no, now, now + council.lease_s,
        council.max_attempts,
    )
    if claim.outcome != CLAIMED:
        log.info("round not claimed", extra=_ids(session_id, round_no, outcome=claim.outcome))
        return claim.outcome
    session = await asyncio.to_thread(council.store.get_session, session_id)
    if session is None:  # deleted since it was queued: end the round rather than pay for it
        note = {"notes": ["the session was deleted"]}
        await asyncio.to_thread(
            council.store.finish_round, session_id, round_no, claim.attempt, records.CANCELLED, note
        )
        return records.CANCELLED
    plan = plan_round(session, round_no, claim.attempt)
    return await RoundConductor(council, plan).conduct()


def plan_round(session: dict, round_no: int, attempt: int) -> RoundPlan:
    """Build the plan for a round from its stored session, keeping what is checkpointed."""
    round_ = session["rounds"][round_no - 1]
    earlier = session["rounds"][: round_no - 1]
    return RoundPlan(
        session_id=session["id"],
        round_no=round_no,
        attempt=attempt,
        question=round_["question"],
        members=list(session["members"]),
        chairman=session["chairman"],
        history=[{"question": r["question"], "answer": _final_answer(r)} for r in earlier],
        answers={answer["member"]: answer for answer in round_["answers"]},
        ballots={ballot["reviewer"]: ballot for ballot in round_["ballots"]},
        synthesis=round_["synthesis"],
    )


def _final_answer(round_: dict) -> str | None:
    synthesis = round_.get("synthesis") or {}
    return synthesis.get("content")


class RoundConductor:
    """Carry one claimed round through its stages under a watched lease."""

    def __init__(self, council: Council, plan: RoundPlan) -> None:
        self.council = council
        self.plan = plan
        self.store = council.store
        self._stop_reason: type[Exception] | None = None

    async def conduct(self) -> str:
        """Run the stages; end the round in one conditional update; return its status."""
        work = asyncio.ensure_future(self._stages())
        watcher = asyncio.ensure_future(self._watch(work))
        try:
            status, outcome = await work
        except (asyncio.CancelledError, LeaseLost, CancelRequested) as stop:
            reason = self._stop_reason or type(stop)
            if reason is LeaseLost:
                log.warning("lease lost; leaving the round to its new holder", extra=self._ids())
                return LEASE_LOST
            if reason is not CancelRequested:
                raise
            status, outcome = records.CANCELLED, {"notes": ["cancelled by the client"]}
        finally:
            watcher.cancel()
        return await self._finish(status, outcome)

    async def _stages(self) -> tuple[str, dict]:
        await self._enter("answers")
        answers = await self._gather_answers()
        answered = [m for m in self.plan.members if answers[m]["content"] is not None]
        notes = [
            f"{self._name(m)} did not answer: {answers[m]['error']}"
            for m in self.plan.members
            if m not in answered
        ]
        if not answered:
            return records.FAILED, {"notes": notes, "error": "no council member answered"}
        ballots = await self._rankings_or_note(answered, notes)
        standings = aggregate_rankings(answered, list(ballots.values()))
        await self._enter("synthesis")
        synthesis = await self._synthesis(answers, answered, standings, notes)
        outcome = {"aggregate": standings, "notes": notes}
        if synthesis["content"] is None:
            error = f"chairman {self._name(self.plan.chairman)} failed: {synthesis['error']}"
            return records.FAILED, {**outcome, "error": error}
        return (records.DEGRADED if notes else records.COMPLETED), outcome

    async def _rankings_or_note(self, answered: list[str], notes: list[str]) -> dict[str, dict]:
        if len(answered) < MIN_ANSWERS_FOR_RANKINGS:
            notes.append("rankings skipped: fewer than two members answered")
            return {}
        await self._enter("rankings")
        ballots = await self._gather_ballots(answered)
        notes.extend(
            f"ballot from {self._name(reviewer)} not counted: {ballot['error']}"
            for reviewer, ballot in ballots.items()
            if not ballot["valid"]
        )
        return ballots

    # Stage 1 -----------------------------------------------------------------------------

    async def _gather_answers(self) -> dict[str, dict]:
        missing = [m for m in self.plan.members if m not in self.plan.answers]
        messages = answer_messages(self.plan.question, self.plan.history)
        await asyncio.gather(*(self._answer(member, messages) for member in missing))
        return self.plan.answers

    async def _answer(self, member: str, messages: list[dict]) -> None:
        completion, error, latency_ms = await self._call(member, messages)
        answer = {
            "member": member,
            "content": completion.content if completion else None,
            "error": error,
            "usage": completion.usage if completion else None,
            "latency_ms": latency_ms,
        }
        await self._checkpoint(self.store.save_answer, answer)
        self.plan.answers[member] = answer
        self._emit("answer", {"member": member, "ok": error is None})

    # Stage 2 -----------------------------------------------------------------------------

    async def _gather_ballots(self, answered: list[str]) -> dict[str, dict]:
        missing = [m for m in answered if m not in self.plan.ballots]
        await asyncio.gather(*(self._ballot(reviewer, answered) for reviewer in missing))
        return {m: self.plan.ballots[m] for m in answered}

    async def _ballot(self, reviewer: str, answered: list[str]) -> None:
        rng = random.Random(f"{self.plan.session_id}:{self.plan.round_no}:{reviewer}")
        labels = assign_labels(answered, reviewer, rng)
        shown = {label: self.plan.answers[member]["content"] for label, member in labels.items()}
        messages = ranking_messages(self.plan.question, shown)
        completion, error, latency_ms = await self._call(reviewer, messages)
        if completion is None:
            ballot = failed_ballot(reviewer, labels, error, latency_ms)
        else:
            ballot = make_ballot(reviewer, labels, completion.content, completion.usage, latency_ms)
        await self._checkpoint(self.store.save_ballot, ballot)
        self.plan.ballots[reviewer] = ballot
        self._emit("ballot", {"reviewer": reviewer, "valid": ballot["valid"]})

    # Stage 3 -----------------------------------------------------------------------------

    async def _synthesis(
        self, answers: dict, answered: list[str], standings: list[dict], notes: list[str]
    ) -> dict:
        if self.plan.synthesis is not None:
            return self.plan.synthesis
        by_name = {self._name(m): answers[m]["content"] for m in answered}
        named = [{**s, "member": self._name(s["member"])} for s in standings]
        messages = synthesis_messages(self.plan.question, by_name, named, self.plan.history, notes)
        chairman = self.plan.chairman
        completion, error, latency_ms = await self._call(chairman, messages)
        synthesis = {
            "model": chairman,
            "content": completion.content if completion else None,
            "error": error,
            "usage": completion.usage if completion else None,
            "latency_ms": latency_ms,
        }
        await self._checkpoint(self.store.save_synthesis, synthesis)
        self.plan.synthesis = synthesis
        return synthesis

    # Calls, checkpoints, lease -----------------------------------------------------------

    async def _call(
        self, model_id: str, messages: list[dict]
    ) -> tuple[Completion | None, str | None, int]:
        started = time.monotonic()
        try:
            completion = await self.council.provider.complete(
                self.council.roster.model(model_id), messages
            )
        except CALL_ERRORS as error:
            log.info("call failed", extra=self._ids(model=model_id, error=str(error)))
            return None, str(error), _elapsed_ms(started)
        return completion, None, completion.latency_ms

    async def _checkpoint(self, save: Callable[[str, int, dict], None], call: dict) -> None:
        await asyncio.to_thread(save, self.plan.session_id, self.plan.round_no, call)

    async def _enter(self, stage: str) -> None:
        lease = await self._renew(stage)
        if not lease.held:
            raise LeaseLost()
        if lease.cancel_requested:
            raise CancelRequested()
        self._emit("stage", {"stage": stage})

    async def _renew(self, stage: str | None = None):
        return await asyncio.to_thread(
            self.store.renew_lease, self.plan.session_id, self.plan.round_no, self.plan.attempt,
            time.time() + self.council.lease_s, stage,
        )

    async def _watch(self, work: asyncio.Future) -> None:
        """Renew the lease a few times per lease period; stop the work on cancel or loss."""
        while not work.done():
            await asyncio.sleep(self.council.watch_every_s)
            lease = await self._renew()
            if not lease.held or lease.cancel_requested:
                self._stop_reason = LeaseLost if not lease.held else CancelRequested
                work.cancel()
                return

    async def _finish(self, status: str, outcome: dict) -> str:
        finished = await asyncio.to_thread(
            self.store.finish_round, self.plan.session_id, self.plan.round_no, self.plan.attempt,
            status, outcome,
        )
        if not finished:
            log.warning("round finished elsewhere; outcome dropped", extra=self._ids())
            return LEASE_LOST
        self._emit("finished", {"status": status})
        log.info("round finished", extra=self._ids(status=status))
        return status

    def _emit(self, kind: str, data: dict) -> None:
        self.council.on_event(self.plan.session_id, self.plan.round_no, kind, data)

    def _name(self, model_id: str) -> str:
        return self.council.roster.model(model_id).name

    def _ids(self, **extra: object) -> dict:
        return _ids(self.plan.session_id, self.plan.round_no, **extra)


def _ids(session_id: str, round_no: int, **extra: object) -> dict:
    return {"session_id": session_id, "round_no": round_no, **extra}


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)

