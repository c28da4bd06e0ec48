"""OpenAI's chat completion shapes: the request, a conversation folded into one question, answers.

A conversation becomes one council question. The last message must be the user's: it is the
question. When anything came before it (system or developer messages, earlier turns), the
question text is that context, each message as ``Role: text``, then the question::

    The conversation so far, for context:

    System: Answer in one sentence.

    User: What is a council?

    Assistant: A group that deliberates.

    The question to answer now:
    Who chairs it?

A lone user message is the question as it is. Sampling parameters (``temperature``,
``max_tokens``, ...) are accepted and ignored: the council's members use their own.
"""

from __future__ import annotations

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates

from api.present import USAGE_KEYS
from shared.presets import MODEL_PREFIX

ROLES = ("system", "developer", "user", "assistant")
ROLE_LABELS = {"system": "System", "developer": "System", "user": "User",
               "assistant": "Assistant"}
CONTEXT_HEADER = "The conversation so far, for context:"
QUESTION_HEADER = "The question to answer now:"
MAX_MESSAGES = 500
CHUNK_CHARS = 200  # a streamed synthesis is sent in pieces of about this many characters


class ChatMessageSchema(Schema):
    """One message; its content is a string or a list of text parts."""

    class Meta:
        unknown = EXCLUDE

    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    content = fields.Raw(required=True)

    @validates("content")
    def _check_content(self, value: object, **_: object) -> None:
        message_text(value)


class ChatCompletionSchema(Schema):
    """The fields of a chat completion request the council reads; other fields are ignored."""

    class Meta:
        unknown = EXCLUDE

    model = fields.String(required=True, validate=validate.Length(min=1))
    messages = fields.List(fields.Nested(ChatMessageSchema), required=True,
                           validate=validate.Length(min=1, max=MAX_MESSAGES))
    stream = fields.Boolean(load_default=False, allow_none=True)
    n = fields.Integer(load_default=1, allow_none=True,
                       validate=validate.Equal(1, error="a council writes one answer: n must be 1"))
    stream_options = fields.Dict(load_default=None, allow_none=True)


def message_text(content: object) -> str:
    """Return a message's text; raise ``ValidationError`` for content that is not text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and content and all(
            isinstance(part, dict) and part.get("type") == "text"
            and isinstance(part.get("text"), str) for part in content):
        return "\n".join(part["text"] for part in content)
    raise ValidationError("content must be a string or a list of text parts")


def fold_conversation(messages: list[dict]) -> tuple[str, str]:
    """Return the council's question for a conversation, and the last user message alone.

    Raises ``ValidationError`` when the last message is not the user's or has no text.
    """
    *context, last = messages
    question = message_text(last["content"])
    if last["role"] != "user" or not question.strip():
        raise ValidationError("the last message must be the user's, with text", "messages")
    if not context:
        return question, question
    turns = [f"{ROLE_LABELS[m['role']]}: {message_text(m['content'])}" for m in context]
    folded = "\n\n".join([CONTEXT_HEADER, *turns, f"{QUESTION_HEADER}\n{question}"])
    return folded, question


def completion_id(session_id: str) -> str:
    """Return the completion's id, which names the session behind it."""
    return f"chatcmpl-{session_id}"


def openai_usage(usage: dict) -> dict:
    """Return a round's token counts in OpenAI's usage shape."""
    return {key: usage.get(key) or 0 for key in USAGE_KEYS}


def completion_body(model: str, session: dict, content: str, council: dict) -> dict:
    """Return a whole ``chat.completion`` with the council's details beside it."""
    return {
        "id": completion_id(session["id"]),
        "object": "chat.completion",
        "created": int(session["created_at"]),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": openai_usage(council["usage"]),
        "council": council,
    }


def chunk_body(model: str, session: dict, delta: dict | None, finish_reason: str | None = None,
               **extra: object) -> dict:
    """Return one ``chat.completion.chunk`` (``delta`` of ``None``: a chunk with no choice)."""
    choices = [] if delta is None else [
        {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
    return {"id": completion_id(session["id"]), "object": "chat.completion.chunk",
            "created": int(session["created_at"]), "model": model, "choices": choices, **extra}


def pieces(text: str, size: int = CHUNK_CHARS) -> list[str]:
    """Split ``text`` into pieces of about ``size`` characters, at spaces where possible."""
    parts: list[str] = []
    while len(text) > size:
        cut = text.rfind(" ", size // 2, size) + 1 or size
        parts.append(text[:cut])
        text = text[cut:]
    return [*parts, text] if text else parts


def is_council_model(model: str) -> bool:
    """Tell whether a requested model names a council."""
    return model.startswith(MODEL_PREFIX)
