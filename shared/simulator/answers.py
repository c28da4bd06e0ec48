"""Write the simulated provider's replies: deterministic, and plainly marked as simulated.

Equal inputs give equal contents: every choice in a content is drawn from a hash of the model id
and the last user message, never from a clock or a random generator.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid

from shared.council.prompts import is_synthesis_request, ranking_labels

EXCERPT_CHARS = 80
CHARS_PER_TOKEN = 4
FINDINGS = (
    "The question has a short answer and a longer one; the short one comes first.",
    "Most of the difficulty lies in the assumptions, so they are stated before the conclusion.",
    "Two approaches are reasonable here, and the simpler one is usually enough.",
    "The main risk is a detail that is easy to overlook, and it deserves a second look.",
    "Evidence points one way, with a known exception worth keeping in mind.",
    "A worked example makes the reasoning easier to check than a general rule.",
)
VERDICTS = (
    "is the clearest and covers the essentials",
    "is accurate but leaves out a useful detail",
    "is plausible but less precise than the others",
    "repeats points without adding much",
)


def compose(model: str, messages: list[dict]) -> str:
    """Return the simulated content for a request: a ranking, a synthesis or an answer."""
    text = last_user_text(messages)
    labels = ranking_labels(text)
    if labels:
        return _ranking(model, text, labels)
    if is_synthesis_request(text):
        return _synthesis(model, text)
    return _answer(model, text)


def last_user_text(messages: list[dict]) -> str:
    """Return the text of the last user message (text parts joined), or an empty string."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return _text_of(message.get("content"))
    return ""


def completion_body(model: str, messages: list[dict], content: str) -> dict:
    """Return an OpenAI chat completion body with a usage block sized like real text."""
    prompt_chars = sum(len(_text_of(message.get("content"))) for message in messages)
    prompt_tokens = max(1, prompt_chars // CHARS_PER_TOKEN)
    completion_tokens = max(1, len(content) // CHARS_PER_TOKEN)
    return {
        "id": f"chatcmpl-sim-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def _answer(model: str, question: str) -> str:
    seed = _digest(model, question)
    count = 2 + seed % 3
    findings = [FINDINGS[(seed // 7 + step * 5) % len(FINDINGS)] for step in range(count)]
    return "\n\n".join(
        [
            f"[simulated {model}] This is a simulated answer, not written by a real model.",
            f'You asked: "{_excerpt(question)}"',
            " ".join(findings),
        ]
    )


def _ranking(model: str, text: str, labels: list[str]) -> str:
    order = sorted(labels, key=lambda label: _digest(model, text, label))
    notes = [
        f"{label} {VERDICTS[min(place, len(VERDICTS) - 1)]}." for place, label in enumerate(order)
    ]
    ranking = json.dumps({"ranking": order})
    return "\n\n".join(
        [
            f"[simulated {model}] This is a simulated evaluation, not a real model's judgement.",
            " ".join(notes),
            f"```json\n{ranking}\n```",
        ]
    )


def _synthesis(model: str, text: str) -> str:
    finding = FINDINGS[_digest(model, text) % len(FINDINGS)]
    return "\n\n".join(
        [
            f"[simulated {model}] This is a simulated synthesis, not written by a real model.",
            "The council's answers were weighed together with the peer ranking; where they "
            "agreed, the common ground is kept, and where they differed, the better-ranked "
            "answer is preferred.",
            finding,
        ]
    )


def _digest(*parts: str) -> int:
    joined = "\x1f".join(parts).encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.sha256(joined).digest()[:8], "big")


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= EXCERPT_CHARS else flat[: EXCERPT_CHARS - 3] + "..."


def _text_of(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [part.get("text", "") for part in content if isinstance(part, dict)]
        return "\n".join(part for part in parts if isinstance(part, str))
    return ""
