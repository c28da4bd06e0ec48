"""Every prompt the council sends, and the markers that let a reader recognise them.

No prompt names a model: reviewers see answers under anonymous labels ("Response A", ...), and
the chairman sees whatever display names the caller chooses. The first line of a ranking,
correction or synthesis request is a fixed marker, and a ranking or correction request lists its
labels on the line right after it, before any question or answer text, so that neither a
question nor an answer can forge them.
"""

from __future__ import annotations

ANSWER_SYSTEM = (
    "You are one member of a council of independent experts. Answer the user's question "
    "directly, accurately and completely. Say plainly when you are unsure."
)
FOLLOW_UP_SYSTEM = (
    "The earlier replies in this conversation are the council's final answers to earlier "
    "questions; use them as context for the new question."
)
NO_FINAL_ANSWER = "(No final answer was reached for this question.)"

RANKING_SYSTEM = (
    "You are an impartial reviewer. Judge answers on accuracy, completeness and usefulness, "
    "not on length or style. The answers are anonymous and shown in random order."
)
RANKING_MARKER = "RANKING REQUEST: evaluate and rank the anonymous responses below."
CORRECTION_MARKER = "RANKING CORRECTION: your previous ranking could not be used."
LABELS_PREFIX = "Labels:"
END_OF_RESPONSES = "=== End of responses ==="
RANKING_INSTRUCTIONS = (
    "Evaluate each response in one or two sentences: what it gets right and what it gets "
    "wrong. Then rank all {count} responses from best to worst, using every label exactly "
    "once. Give the ranking as a JSON object on its own line, in this form:\n"
    '{{"ranking": ["<best label>", "<next label>", ...]}}\n'
    "If you cannot write JSON, end instead with the line FINAL RANKING: followed by a "
    "numbered list of the labels, best first, one per line, and nothing after it."
)
CORRECTION_INSTRUCTIONS = (
    "Problem: {error}\n"
    "Reply with only a JSON object that ranks every label above exactly once, best first, "
    "and nothing else, in this form:\n"
    '{{"ranking": ["<best label>", "<next label>", ...]}}'
)

CHAIRMAN_SYSTEM = (
    "You are the chairman of a council of experts. Several members answered the same "
    "question and reviewed each other's answers anonymously. Write the single best final "
    "answer for the user."
)
SYNTHESIS_MARKER = "SYNTHESIS REQUEST: write the council's final answer."
SYNTHESIS_INSTRUCTIONS = (
    "Write the final answer to the question. Treat the answers and the peer ranking as "
    "evidence, not as votes: keep what is correct, fix what is wrong, resolve disagreements "
    "and say where real uncertainty remains. Answer the user directly, without describing "
    "the council's process."
)
RANKING_LEGEND = (
    "Peer ranking, best first (mean rank 1 is best; disagreement runs from 0, reviewers "
    "agree, to 1, reviewers split between best and worst):"
)
NO_RANKING = "Peer ranking: none; the members' answers were not ranked in this round."

REQUEST_MARKERS = frozenset({RANKING_MARKER, CORRECTION_MARKER})


def answer_messages(question: str, history: list[dict]) -> list[dict]:
    """Return the stage 1 chat messages: earlier rounds as alternating turns, then the question."""
    system = ANSWER_SYSTEM if not history else f"{ANSWER_SYSTEM} {FOLLOW_UP_SYSTEM}"
    messages = [_message("system", system)]
    for turn in history:
        messages.append(_message("user", turn["question"]))
        messages.append(_message("assistant", turn.get("answer") or NO_FINAL_ANSWER))
    messages.append(_message("user", question))
    return messages


def ranking_messages(question: str, labelled: dict[str, str]) -> list[dict]:
    """Return the stage 2 chat messages showing each answer under its label, in dict order."""
    instructions = RANKING_INSTRUCTIONS.format(count=len(labelled))
    body = ["Question:", question, "", _blocks(labelled), "", END_OF_RESPONSES, ""]
    text = "\n".join([RANKING_MARKER, _labels_line(labelled), "", *body, instructions])
    return [_message("system", RANKING_SYSTEM), _message("user", text)]


def ballot_correction_messages(
    question: str, labelled: dict[str, str], raw: str | None, error: str
) -> list[dict]:
    """Return the ranking conversation followed by a request for only the JSON ranking."""
    messages = ranking_messages(question, labelled)
    if raw and raw.strip():
        messages.append(_message("assistant", raw))
    instructions = CORRECTION_INSTRUCTIONS.format(error=error)
    correction = "\n".join([CORRECTION_MARKER, _labels_line(labelled), instructions])
    messages.append(_message("user", correction))
    return messages


def ranking_labels(text: str) -> list[str]:
    """Return the labels a ranking or correction request shows, in order, else an empty list."""
    marker, _, rest = text.lstrip().partition("\n")
    line = rest.partition("\n")[0].strip()
    if marker.strip() not in REQUEST_MARKERS or not line.startswith(LABELS_PREFIX):
        return []
    labels = line[len(LABELS_PREFIX) :].split(",")
    return [label.strip() for label in labels if label.strip()]


def synthesis_messages(
    question: str,
    answers: dict[str, str],
    standings: list[dict],
    history: list[dict],
    notes: list[str],
) -> list[dict]:
    """Return the stage 3 chat messages for the chairman.

    ``answers`` maps each member's display name to its answer; every standing's ``member`` is
    shown as given, so it should be the same display name.
    """
    parts = [SYNTHESIS_MARKER, ""]
    if history:
        parts += [_earlier_rounds(history), ""]
    parts += ["Question:", question, "", "Answers from the council members:", ""]
    parts += [_blocks(answers) if answers else "(No member answered.)", ""]
    parts += [_standings(standings), ""]
    if notes:
        parts += ["Notes:", *(f"- {note}" for note in notes), ""]
    parts.append(SYNTHESIS_INSTRUCTIONS)
    return [_message("system", CHAIRMAN_SYSTEM), _message("user", "\n".join(parts))]


def is_synthesis_request(text: str) -> bool:
    """Return whether this user message text is a chairman's synthesis request."""
    return text.lstrip().startswith(SYNTHESIS_MARKER)


def _message(role: str, content: str) -> dict:
    return {"role": role, "content": content}


def _labels_line(labelled: dict[str, str]) -> str:
    return f"{LABELS_PREFIX} {', '.join(labelled)}"


def _blocks(texts: dict[str, str]) -> str:
    return "\n\n".join(f"=== {heading} ===\n{text}" for heading, text in texts.items())


def _earlier_rounds(history: list[dict]) -> str:
    lines = ["Earlier in this conversation:"]
    for number, turn in enumerate(history, start=1):
        lines.append(f"Question {number}: {turn['question']}")
        lines.append(f"Final answer {number}: {turn.get('answer') or NO_FINAL_ANSWER}")
    return "\n".join(lines)


def _standings(standings: list[dict]) -> str:
    ranked = [s for s in standings if s.get("ballots")]
    if not ranked:
        return NO_RANKING
    lines = [RANKING_LEGEND]
    for place, standing in enumerate(ranked, start=1):
        lines.append(
            f"{place}. {standing['member']}: mean rank {standing['mean_rank']:.2f} "
            f"from {standing['ballots']} ballot(s), "
            f"disagreement {standing['disagreement']:.2f}"
        )
    unranked = [str(s["member"]) for s in standings if not s.get("ballots")]
    if unranked:
        lines.append(f"Not ranked by any valid ballot: {', '.join(unranked)}")
    return "\n".join(lines)


CHAT_SYSTEM = (
    "You are {speaker}, one participant in a group discussion with {others}. Discuss the "
    "user's question with them: build on what was said, correct it where it is wrong, and "
    "address others by name when you answer them. Keep your turn short and add something new."
)
CHAT_OPENING = "You speak first. Give your view of the question."
CHAT_TURN = "The discussion so far:\n\n{transcript}\n\nNow it is your turn, {speaker}."


def chat_messages(
    question: str, history: list[dict], transcript: list[tuple[str, str]], speaker: str,
    others: list[str],
) -> list[dict]:
    """Return the messages for one chat turn: who is speaking, the question, the turns so far."""
    system = CHAT_SYSTEM.format(speaker=speaker, others=", ".join(others) or "no one else")
    messages = [_message("system", system)]
    for turn in history:
        messages.append(_message("user", turn["question"]))
        messages.append(_message("assistant", turn.get("answer") or NO_FINAL_ANSWER))
    said = "\n\n".join(f"{name}: {text}" for name, text in transcript)
    turn = CHAT_TURN.format(transcript=said, speaker=speaker) if transcript else CHAT_OPENING
    messages.append(_message("user", f"{question}\n\n{turn}"))
    return messages
