"""The council as an OpenAI-compatible model: ``POST /v1/chat/completions``.

``model: "council/<name>"`` runs one round through the store, the queue and the workers, like
``POST /v1/sessions``, then waits for it (following the session's event stream) at most
``CHAT_COMPLETIONS_WAIT_SECONDS``. The answer is OpenAI's ``chat.completion``: the synthesis is
``choices[0].message.content``, ``usage`` sums every call of the round, and ``council`` holds
the details (session id, answers, aggregate ranking, status and notes). With ``stream: true``
the progress comes as SSE comments (``: stage answers``, ``: answer <member>``, ...), then the
synthesis in ``chat.completion.chunk`` pieces, a last chunk with ``finish_reason: "stop"``
(and ``council``), the usage chunk when ``stream_options.include_usage`` asks for it, and
``data: [DONE]``.

Errors on this route use OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``.
A round still running at the bound gets ``504`` (``code: "council_timeout"``) naming the
session to poll (``Location`` and ``error.poll_url``), with ``x-should-retry: false`` so an
OpenAI client does not start the same council again; a stream ends with that error as its last
event. A round that ended without a final answer gets ``502`` (``council_failed``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator

from flask import Blueprint, Response, current_app, jsonify
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

from api.admission import admit_work
from api.auth import current_caller
from api.errors import ApiError
from api.events import STREAM_SLOTS
from api.openai_shapes import (
    ChatCompletionSchema,
    chunk_body,
    completion_body,
    fold_conversation,
    openai_usage,
    pieces,
)
from api.present import round_body
from api.resources import get_settings, get_store, resources
from api.round_watch import RoundWatch
from api.schemas import CONTROL_CHARS
from api.submission import POLL_AFTER_S, enqueue, json_body
from shared import records
from shared.presets import MODEL_PREFIX, CouncilPreset, default_council
from shared.settings import Settings
from shared.store.base import StoreUnavailable

log = logging.getLogger(__name__)

bp = Blueprint("openai_compat", __name__, url_prefix="/v1")

ERROR_TYPES = {401: "invalid_request_error", 403: "permission_error", 429: "rate_limit_error"}
CODES = {401: "invalid_api_key", 429: "rate_limit_exceeded"}
STAGE_EVENTS = {"stage.started": ("stage", "stage"), "answer.recorded": ("answer", "member"),
                "ballot.recorded": ("ballot", "reviewer"),
                "synthesis.recorded": ("synthesis", "model")}


class OpenAIError(ApiError):
    """An error this route answers in OpenAI's shape, naming the parameter at fault."""

    def __init__(self, status: int, code: str, message: str, param: str | None = None,
                 headers: dict | None = None, **extra: object) -> None:
        super().__init__(status, code, message, headers=headers)
        self.param = param
        self.extra = extra


@bp.post("/chat/completions")
def chat_completions():
    """Ask a council as if it were one model (OpenAI's chat completions).

    The model is ``council/default`` or ``council/<preset>``; the last message is the user's
    question, and earlier messages become its context.
    """
    settings = get_settings()
    body = _load(json_body())
    council = _council(settings, body["model"])
    question, latest = fold_conversation(body["messages"])
    _check_question(question, settings.max_question_chars)
    slots = current_app.extensions[STREAM_SLOTS]
    if not slots.acquire(blocking=False):
        raise ApiError(503, "too_many_streams", "this API process waits on as many councils as "
                       "it may; try again shortly", headers={"Retry-After": "5"})
    try:
        session = _submit(settings, council, question, latest)
        watch = RoundWatch(resources().events, get_store(), session["id"], 1,
                           time.monotonic() + settings.chat_completions_wait_s,
                           settings.sse_heartbeat_s)
        if body["stream"]:
            response = _streamed(watch, session, body, settings)
        else:
            response = _whole(watch, body["model"], settings)
    except BaseException:
        slots.release()
        raise
    response.call_on_close(slots.release)
    return response


def _load(raw: dict) -> dict:
    try:
        return ChatCompletionSchema().load(raw)
    except ValidationError as error:
        param, message = _first_problem(error.normalized_messages())
        raise OpenAIError(400, "invalid_request", f"{param}: {message}", param) from error


def _first_problem(messages: object, path: str = "") -> tuple[str, str]:
    if isinstance(messages, dict) and messages:
        key, value = next(iter(messages.items()))
        name = f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else key)
        return _first_problem(value, name)
    if isinstance(messages, list) and messages:
        return path, str(messages[0])
    return path or "body", str(messages)


def _council(settings: Settings, model: str) -> CouncilPreset:
    councils = {MODEL_PREFIX + name: preset for name, preset in settings.council_presets.items()}
    councils.setdefault(default_council(settings.roster).model_id,
                        default_council(settings.roster))
    if model not in councils:
        raise OpenAIError(404, "model_not_found", f"the model {model!r} does not exist; councils "
                          f"are {', '.join(sorted(councils))}", "model")
    return councils[model]


def _check_question(question: str, max_chars: int) -> None:
    if len(question) > max_chars:
        raise OpenAIError(400, "context_length_exceeded", f"the conversation is {len(question)} "
                          f"characters as a question; at most {max_chars} fit", "messages")
    if CONTROL_CHARS.search(question):
        raise OpenAIError(400, "invalid_request", "messages must not contain control characters",
                          "messages")


def _submit(settings: Settings, council: CouncilPreset, question: str, latest: str) -> dict:
    caller = current_caller()
    key = caller.record or {}
    priority = key.get("priority") or records.INTERACTIVE
    admit_work(priority)
    session = records.new_session(
        question, council.members, council.chairman, owner=caller.owner, priority=priority,
        callback_url=key.get("callback_url"), min_answers=council.min_answers,
        min_ballots=council.min_ballots)
    session["title"] = records.title_from(latest)
    get_store().create_session(session)
    enqueue(session, 1)
    return session


def _whole(watch: RoundWatch, model: str, settings: Settings) -> Response:
    for _ in watch.progress():
        pass
    ended = _ended_session(watch, settings)
    council = council_details(ended, settings)
    return jsonify(completion_body(model, ended, records.last_round(ended)["synthesis"]["content"],
                                   council))


def _streamed(watch: RoundWatch, session: dict, body: dict, settings: Settings) -> Response:
    include_usage = bool((body["stream_options"] or {}).get("include_usage"))
    frames = _frames(watch, session, body["model"], include_usage, settings)
    return Response(frames, mimetype="text/event-stream",
                    headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def _frames(watch: RoundWatch, session: dict, model: str, include_usage: bool,
            settings: Settings) -> Iterator[str]:
    """Yield the stream: progress comments, the synthesis in pieces, the end, ``[DONE]``."""
    yield _data(chunk_body(model, session, {"role": "assistant", "content": ""}))
    for event in watch.progress():
        yield _comment(event)
    try:
        ended = _ended_session(watch, settings)
    except OpenAIError as error:
        yield _data(error_body(error))
        yield "data: [DONE]\n\n"
        return
    council = council_details(ended, settings)
    for piece in pieces(records.last_round(ended)["synthesis"]["content"]):
        yield _data(chunk_body(model, ended, {"content": piece}))
    yield _data(chunk_body(model, ended, {}, "stop", council=council))
    if include_usage:
        yield _data(chunk_body(model, ended, None, usage=openai_usage(council["usage"])))
    yield "data: [DONE]\n\n"


def _ended_session(watch: RoundWatch, settings: Settings) -> dict:
    """Return the session once its round ended with an answer; raise the error to send otherwise."""
    session = watch.store.get_session(watch.session_id)
    round_ = records.last_round(session)
    poll_url = session_url(session["id"], settings)
    if round_["status"] in records.UNFINISHED:
        raise OpenAIError(
            504, "council_timeout", f"the council is still working after "
            f"{settings.chat_completions_wait_s:g} s; poll {poll_url} for its answer",
            headers={"Location": poll_url, "Retry-After": str(POLL_AFTER_S),
                     "x-should-retry": "false"},
            poll_url=poll_url, session_id=session["id"])
    synthesis = round_["synthesis"] or {}
    if synthesis.get("content") is None:
        raise OpenAIError(502, "council_failed", f"the council's round ended {round_['status']} "
                          f"without a final answer: {round_['error'] or synthesis.get('error')}",
                          headers={"x-should-retry": "false"}, poll_url=poll_url,
                          session_id=session["id"])
    return session


def council_details(session: dict, settings: Settings) -> dict:
    """Return what the council did, beside the completion: answers, ranking, status, notes."""
    round_ = round_body(records.last_round(session), settings.roster)
    return {
        "session_id": session["id"],
        "round_no": round_["round_no"],
        "status": round_["status"],
        "poll_url": session_url(session["id"], settings),
        "members": session["members"],
        "chairman": session["chairman"],
        "answers": [{key: a.get(key) for key in ("member", "name", "content", "error")}
                    for a in round_["answers"]],
        "aggregate": round_["aggregate"],
        "synthesis_model": (round_["synthesis"] or {}).get("model"),
        "notes": round_["notes"],
        "usage": round_["usage"],
    }


def session_url(session_id: str, settings: Settings) -> str:
    """Return where the session behind a completion is read."""
    return f"{settings.public_base_url or ''}/v1/sessions/{session_id}"


def _comment(event: dict | None) -> str:
    if event is None:
        return ": ping\n\n"
    kind, field = STAGE_EVENTS.get(event.get("type"), (event.get("type"), "status"))
    return f": {kind} {event.get(field) or ''}".rstrip() + "\n\n"


def _data(body: dict) -> str:
    return f"data: {json.dumps(body, separators=(',', ':'))}\n\n"


def error_body(error: ApiError) -> dict:
    """Return an error in OpenAI's shape (``code`` is always a string)."""
    return {"error": {
        "message": error.message,
        "type": ERROR_TYPES.get(error.status, "server_error" if error.status >= 500
                                else "invalid_request_error"),
        "param": getattr(error, "param", None),
        "code": CODES.get(error.status, error.code),
        **getattr(error, "extra", {}),
    }}


def _answer_error(error: ApiError):
    response = jsonify(error_body(error))
    response.status_code = error.status
    response.headers.update(error.headers)
    return response


@bp.errorhandler(ApiError)
def _api_error(error: ApiError):
    return _answer_error(error)


@bp.errorhandler(ValidationError)
def _invalid(error: ValidationError):
    param, message = _first_problem(error.normalized_messages())
    return _answer_error(OpenAIError(400, "invalid_request", f"{param}: {message}", param))


@bp.errorhandler(StoreUnavailable)
def _store_down(error: StoreUnavailable):
    log.error("store unavailable", extra={"error": str(error)})
    return _answer_error(ApiError(503, "store_unavailable", "the session store is unavailable",
                                  headers={"Retry-After": "5"}))


@bp.errorhandler(HTTPException)
def _http(error: HTTPException):
    code = (error.name or "error").lower().replace(" ", "_")
    return _answer_error(ApiError(error.code or 500, code, error.description or error.name))


@bp.errorhandler(Exception)
def _unexpected(error: Exception):
    log.exception("unhandled error")
    return _answer_error(ApiError(500, "internal_error", "an internal error occurred"))
