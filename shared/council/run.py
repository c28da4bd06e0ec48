"""Conduct one council round: answers, then rankings, then the chairman's synthesis.

Every call's result is checkpointed the moment it returns, so a round that is re-delivered after
a crash makes only the calls that were still in flight. While the round runs, a watcher renews
its lease; when a cancel is requested or the lease is lost the work in flight is cancelled.
This module holds the round's lifecycle; ``shared.council.stages`` holds what each stage does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from shared import records
from shared.council.chat import conduct_chat, transcript_text
from shared.council.policy import RoundPolicy
from shared.council.stages import conduct_stages
from shared.provider.client import Completion
from shared.provider.errors import CallNotMade, ProviderError
from shared.roster import Model, Roster
from shared.store.base import CLAIMED, Store

log = logging.getLogger(__name__)

CALL_ERRORS = (ProviderError, CallNotMade)
LEASE_LOST = "lease_lost"
DEADLINE_GRACE_S = 1.0  # the provider enforces deadlines; this only stops one that does not
TIMED_OUT = "no answer before the stage deadline"


class Provider:
    """What a round needs from the provider (``shared.provider.resilient.ResilientProvider``).

    ``deadline`` is a ``time.monotonic`` value after which the call must give up.
    """

    async def complete(
        self, model: Model, messages: list[dict], *, deadline: float | None = None
    ) -> Completion:
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
    policy: RoundPolicy = field(default_factory=RoundPolicy)

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
    min_answers: int
    min_ballots: int
    deadline: float  # time.monotonic() by which the whole round must end
    mode: str = records.COUNCIL
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
    log.info("round claimed", extra=_ids(session_id, round_no, attempt=claim.attempt))
    session = await asyncio.to_thread(council.store.get_session, session_id)
    if session is None:  # deleted since it was queued: end the round rather than pay for it
        note = {"notes": ["the session was deleted"]}
        await asyncio.to_thread(
            council.store.finish_round, session_id, round_no, claim.attempt, records.CANCELLED, note
        )
        return records.CANCELLED
    plan = plan_round(session, round_no, claim.attempt, council.policy)
    return await RoundConductor(council, plan).conduct()


def plan_round(
    session: dict, round_no: int, attempt: int, policy: RoundPolicy | None = None
) -> RoundPlan:
    """Build the plan for a round from its stored session, keeping what is checkpointed.

    The round's deadline counts from its first claim, so a re-delivered round does not get more.
    """
    policy = policy or RoundPolicy()
    round_ = session["rounds"][round_no - 1]
    earlier = session["rounds"][: round_no - 1]
    started_at = round_.get("started_at") or time.time()
    left_s = started_at + policy.round_deadline_s - time.time()
    return RoundPlan(
        session_id=session["id"],
        round_no=round_no,
        attempt=attempt,
        question=round_["question"],
        members=list(session["members"]),
        chairman=session["chairman"],
        history=[{"question": r["question"], "answer": _final_answer(r)} for r in earlier],
        mode=session.get("mode", records.COUNCIL),
        min_answers=session.get("min_answers") or policy.min_answers,
        min_ballots=session.get("min_ballots") or policy.min_ballots,
        deadline=time.monotonic() + left_s,
        answers={answer["member"]: answer for answer in round_["answers"]},
        ballots={ballot["reviewer"]: ballot for ballot in round_["ballots"]},
        synthesis=round_["synthesis"],
    )


def _final_answer(round_: dict) -> str | None:
    """Return what a later round sees of this one: the synthesis, else the turns spoken."""
    synthesis = round_.get("synthesis") or {}
    return synthesis.get("content") or transcript_text(round_)


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
        if self.plan.mode == records.CHAT:
            return await conduct_chat(self)
        return await conduct_stages(self)

    # Calls, checkpoints, lease -----------------------------------------------------------

    async def call(
        self, model_id: str, messages: list[dict], deadline: float
    ) -> tuple[Completion | None, str | None, int]:
        """Ask a model, giving up at ``deadline``; return (completion or None, error, latency)."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(deadline - started + DEADLINE_GRACE_S):
                completion = await self.council.provider.complete(
                    self.council.roster.model(model_id), messages, deadline=deadline
                )
        except CALL_ERRORS as error:
            log.info("call failed", extra=self._ids(model=model_id, error=str(error)))
            return None, str(error), _elapsed_ms(started)
        except TimeoutError:
            log.info("call timed out", extra=self._ids(model=model_id))
            return None, TIMED_OUT, _elapsed_ms(started)
        return completion, None, completion.latency_ms

    def stage_deadline(self) -> float:
        """Return when a stage starting now must end: its own deadline or the round's."""
        return min(time.monotonic() + self.council.policy.stage_deadline_s, self.plan.deadline)

    async def checkpoint(self, save: Callable[[str, int, dict], None], call: dict) -> None:
        """Write one call's result to the store."""
        await asyncio.to_thread(save, self.plan.session_id, self.plan.round_no, call)

    async def enter(self, stage: str) -> None:
        """Start a stage: renew the lease, stop if it was lost or a cancel was asked for."""
        lease = await self._renew(stage)
        if not lease.held:
            raise LeaseLost()
        if lease.cancel_requested:
            raise CancelRequested()
        self.emit("stage", {"stage": stage})

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
        self.emit("finished", {"status": status})
        log.info("round finished", extra=self._ids(status=status))
        return status

    def emit(self, kind: str, data: dict) -> None:
        """Tell the round's listeners what just happened."""
        self.council.on_event(self.plan.session_id, self.plan.round_no, kind, data)

    def name(self, model_id: str) -> str:
        """Return a model's display name."""
        return self.council.roster.model(model_id).name

    def _ids(self, **extra: object) -> dict:
        return _ids(self.plan.session_id, self.plan.round_no, **extra)


def _ids(session_id: str, round_no: int, **extra: object) -> dict:
    return {"session_id": session_id, "round_no": round_no, **extra}


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)

