"""Chat mode: the council talks in turn, each participant seeing what was said before it.

Every member speaks once per round, in roster order, and the chairman joins as the last
participant (once, if it is also a member). Each turn sees the question, the earlier rounds and
the turns so far, and may address the others by name. A turn is checkpointed like an answer, so a
re-delivered round picks up at the first participant who has not spoken.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared import records
from shared.council.prompts import chat_messages
from shared.council.stages import answer_record

if TYPE_CHECKING:
    from shared.council.run import RoundConductor


def participants(members: list[str], chairman: str) -> list[str]:
    """Return who speaks, in order: the members, then the chairman if not among them."""
    return [*members, chairman] if chairman not in members else list(members)


async def conduct_chat(round_: RoundConductor) -> tuple[str, dict]:
    """Let every participant speak in turn; return the round's terminal status and outcome."""
    plan = round_.plan
    speakers = participants(plan.members, plan.chairman)
    await round_.enter("answers")
    for speaker in speakers:
        if speaker not in plan.answers:
            await _speak(round_, speaker, speakers)
    spoke = [s for s in speakers if plan.answers[s]["content"] is not None]
    notes = [f"{round_.name(s)} did not speak: {plan.answers[s]['error']}"
             for s in speakers if s not in spoke]
    if not spoke:
        return records.FAILED, {"notes": notes, "error": "no participant spoke"}
    return (records.DEGRADED if notes else records.COMPLETED), {"notes": notes}


async def _speak(round_: RoundConductor, speaker: str, speakers: list[str]) -> None:
    plan = round_.plan
    transcript = [(round_.name(s), plan.answers[s]["content"]) for s in speakers
                  if s in plan.answers and plan.answers[s]["content"] is not None]
    others = [round_.name(s) for s in speakers if s != speaker]
    messages = chat_messages(plan.question, plan.history, transcript, round_.name(speaker),
                             others)
    completion, error, latency_ms = await round_.call(speaker, messages,
                                                      round_.stage_deadline())
    turn = answer_record(speaker, completion, error, latency_ms)
    await round_.checkpoint(round_.store.save_answer, turn)
    plan.answers[speaker] = turn
    round_.emit("answer", {"member": speaker, "ok": error is None})


def transcript_text(round_: dict) -> str | None:
    """Return a round's turns as plain text, by member id (context for follow-up rounds)."""
    turns = [f"{a['member']}: {a['content']}" for a in round_["answers"] if a.get("content")]
    return "\n\n".join(turns) or None
