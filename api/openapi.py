"""The OpenAPI document, generated from the app's routes and the marshmallow schemas.

Every route the app serves is in the document: its path and methods come from the URL map, its
summary from the view's docstring, its request body from the schema the view loads
(``api.schemas``), its answers from ``api.responses``. ``OPERATIONS`` adds what a route cannot
say by itself: query parameters, the success status and body, and the errors it may answer with
(every error has the same body, ``Error``). ``GET /v1/openapi.json`` serves it without a key.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Flask, current_app
from marshmallow import Schema

from api import responses
from api.errors import not_found
from api.limits import UNLIMITED
from api.observability import SANE_REQUEST_ID
from api.resources import get_settings
from api.schemas import (
    BranchSchema,
    DeleteAllSchema,
    QuestionSchema,
    SessionCreateSchema,
    SessionPatchSchema,
)
from shared import records
from shared.settings import Settings

bp = Blueprint("openapi", __name__)

TITLE = "LLM Council API"
VERSION = "1.0.0"
EXTENSION = "llm_council_openapi"
JSON = "application/json"
CONVERTER = re.compile(r"<(?:[a-z]+:)?(?P<name>\w+)>")
ERRORS = {
    400: "The request is not valid (the body's problems are in `details`).",
    401: "An API key is required, or the one sent is not valid.",
    403: "The key may not do this.",
    404: "No such resource (or it belongs to another key).",
    409: "The resource is not in a state that allows this.",
    413: "The body is larger than `MAX_BODY_BYTES`.",
    415: "The body is not `application/json`.",
    422: "This `Idempotency-Key` was used with a different request.",
    429: "A rate limit was reached; `Retry-After` says when to try again.",
    502: "The council's round ended without a final answer.",
    503: "A dependency (store, Redis or the job queue) is unavailable; see `Retry-After`.",
    504: "The council was still working after `CHAT_COMPLETIONS_WAIT_SECONDS`; poll the session "
         "named by `Location`.",
}
BODY_ERRORS = (400, 413, 415)


def _query(name: str, schema: dict, description: str) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}


def _header(name: str, description: str, schema: dict | None = None) -> dict:
    return {"name": name, "in": "header", "required": False,
            "schema": schema or {"type": "string"}, "description": description}


IDEMPOTENCY_KEY = _header("Idempotency-Key", "Retrying with the same key and body gives the "
                          "first answer again.", {"type": "string", "minLength": 1,
                                                  "maxLength": 255})
REQUEST_ID = _header("X-Request-ID", "The request's id in the logs, echoed in the answer; "
                     "another value is replaced by a new id.",
                     {"type": "string", "pattern": SANE_REQUEST_ID.pattern})
FORMAT = _query("format", {"type": "string", "enum": ["json", "markdown"], "default": "json"},
                "The export's format.")


@dataclass(frozen=True)
class Operation:
    """What the document says about one route beyond its path, methods and docstring."""

    tag: str
    ok: int = 200
    body: type[Schema] | Schema | None = None  # the JSON success body
    request: Callable[[Settings], Schema] | None = None
    parameters: tuple[dict, ...] = ()
    errors: tuple[int, ...] = ()
    public: bool = False
    media: tuple[str, ...] = (JSON,)
    also: dict[int, str] = field(default_factory=dict)  # other success statuses, no body


OPERATIONS: dict[str, Operation] = {
    "health.health": Operation("operations", body=responses.Health, public=True),
    "health.ready": Operation("operations", body=responses.Readiness, errors=(503,), public=True),
    "health.models": Operation("sessions", body=responses.RosterList),
    "observability.public_metrics": Operation("operations", public=True,
                                              media=("text/plain",)),
    "observability.metrics": Operation("operations", errors=(403,), media=("text/plain",)),
    "openapi.document": Operation("operations", public=True),
    # The body is OpenAI's chat completion request (model, messages, stream): not described
    # here, so that fuzzing never starts councils that no worker runs.
    "openai_compat.chat_completions": Operation(
        "openai", body=responses.ChatCompletion, media=(JSON, "text/event-stream"),
        errors=(*BODY_ERRORS, 404, 502, 503, 504)),
    "sessions.create_session": Operation(
        "sessions", ok=202, body=responses.Session, request=SessionCreateSchema,
        parameters=(IDEMPOTENCY_KEY,), errors=(*BODY_ERRORS, 403, 409, 422, 503)),
    "sessions.list_sessions": Operation("sessions", body=responses.SessionPage, parameters=(
        _query("limit", {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
               "Sessions per page."),
        _query("cursor", {"type": "string"}, "The `next_cursor` of the previous page."),
        _query("status", {"type": "string", "enum": responses.STATUSES},
               "Only sessions with this status."),
        _query("pinned", {"type": "string", "enum": ["true", "false"]},
               "Only pinned (or unpinned) sessions."),
        _query("q", {"type": "string"}, "Only sessions whose title or question has this text."),
    ), errors=(400,)),
    "sessions.get_session": Operation(
        "sessions", body=responses.Session, errors=(400, 404), also={304: "Not modified."},
        parameters=(
            _query("wait", {"type": "number", "minimum": 0, "maximum": 30},
                   "Wait up to this many seconds for the session to change (answers at once "
                   "when its last round has ended, or when the process serves as many waits "
                   "as it may)."),
            _query("until", {"type": "string", "enum": ["finished"]},
                   "With `wait`: wait for the last round to end rather than for any change."),
            _header("If-None-Match", "The ETag of the copy the client holds."),
        )),
    "sessions.add_round": Operation(
        "sessions", ok=202, body=responses.Session, request=lambda s: QuestionSchema(
            s.max_question_chars), parameters=(IDEMPOTENCY_KEY,),
        errors=(*BODY_ERRORS, 404, 409, 422, 503)),
    "sessions.cancel_session": Operation("sessions", body=responses.Session, errors=(404,)),
    "session_edits.patch_session": Operation(
        "sessions", body=responses.Session, request=lambda s: SessionPatchSchema(),
        errors=(*BODY_ERRORS, 404)),
    "session_edits.delete_session": Operation("sessions", ok=204, errors=(404,)),
    "session_edits.delete_all_sessions": Operation(
        "sessions", body=responses.Deleted, request=lambda s: DeleteAllSchema(),
        errors=BODY_ERRORS),
    "session_edits.branch_session": Operation(
        "sessions", ok=202, body=responses.Session, request=lambda s: BranchSchema(),
        parameters=(IDEMPOTENCY_KEY,), errors=(*BODY_ERRORS, 404, 409, 422, 503),
        also={201: "Branched without a new question: nothing was enqueued."}),
    "session_edits.share_session": Operation("sharing", body=responses.Share, errors=(404,)),
    "session_edits.unshare_session": Operation("sharing", ok=204, errors=(404,)),
    "shared.shared_session": Operation("sharing", body=responses.Session, errors=(404,),
                                       public=True),
    "exports.export_session": Operation("sessions", body=responses.Session,
                                        parameters=(FORMAT,), errors=(400, 404),
                                        media=(JSON, "text/markdown")),
    "exports.export_all_sessions": Operation("sessions", body=responses.Session(many=True),
                                             parameters=(FORMAT,), errors=(400,),
                                             media=(JSON, "text/markdown")),
    "events.session_events": Operation(
        "sessions", media=("text/event-stream",), errors=(400, 404, 503),
        also={204: "The session's last round ended and nothing is left to replay."},
        parameters=(
            _query("last_event_id", {"type": "string"}, "Resume after this event id."),
            _header("Last-Event-ID", "Resume after this event id."),
        )),
    "admin.list_workers": Operation("admin", body=responses.WorkerList, errors=(403, 503)),
    "admin.list_queues": Operation("admin", body=responses.QueueList, errors=(403, 503)),
    "admin.list_tasks": Operation("admin", body=responses.TaskList, errors=(400, 403, 503),
                                  parameters=(_query("state", {
                                      "type": "string", "enum": ["active", "reserved",
                                                                 "scheduled"],
                                      "default": "active"}, "Which tasks to list."),)),
    "admin.get_task": Operation("admin", body=responses.Task, errors=(403, 404, 503)),
    "admin.revoke_task": Operation("admin", ok=202, body=responses.Revoked, errors=(403, 503)),
    "admin.list_breakers": Operation("admin", body=responses.BreakerList, errors=(403,)),
    "admin.reset_breaker": Operation("admin", body=responses.Breaker, errors=(403, 404)),
}


@bp.get("/v1/openapi.json")
def document():
    """Return this API's OpenAPI document (not served in production, as the seed promises)."""
    if get_settings().environment == "production":
        raise not_found("document")
    app = current_app._get_current_object()
    if EXTENSION not in app.extensions:
        app.extensions[EXTENSION] = build_document(app, get_settings())
    return app.extensions[EXTENSION]


def build_document(app: Flask, settings: Settings) -> dict:
    """Describe every JSON route of ``app`` (see ``documented``) as an OpenAPI 3 document."""
    spec = APISpec(title=TITLE, version=VERSION, openapi_version="3.0.3",
                   plugins=[MarshmallowPlugin()], info={"description": _description()},
                   security=[{"bearer": []}, {"apiKey": []}])
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    spec.components.security_scheme("apiKey", {"type": "apiKey", "in": "header",
                                               "name": "X-API-Key"})
    spec.components.schema("Error", schema=responses.ErrorBody)
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: (r.rule, r.endpoint)):
        if not documented(rule.endpoint):
            continue
        operation = OPERATIONS.get(rule.endpoint) or Operation("other")
        view = app.view_functions[rule.endpoint]
        methods = sorted(rule.methods - {"HEAD", "OPTIONS"})
        spec.path(path=CONVERTER.sub(r"{\g<name>}", rule.rule), operations={
            method.lower(): _operation(rule, view, operation, settings) for method in methods})
    return _add_checks_made_in_code(spec.to_dict(), settings)


def documented(endpoint: str) -> bool:
    """Tell whether a route belongs in the document: the JSON API, not files or console pages."""
    return endpoint != "static" and not endpoint.startswith("console.")


def _operation(rule, view, operation: Operation, settings: Settings) -> dict:
    doc = inspect.getdoc(view) or rule.endpoint
    summary, _, description = doc.partition("\n\n")
    path_parameters = [{"name": name, "in": "path", "required": True,
                        "schema": {"type": "string", "minLength": 1}}
                       for name in sorted(rule.arguments)]
    described = {
        "operationId": rule.endpoint,
        "summary": " ".join(summary.split()),
        "tags": [operation.tag],
        "parameters": [*path_parameters, *operation.parameters, REQUEST_ID],
        "responses": _responses(operation, limited=rule.endpoint not in UNLIMITED),
    }
    if description:
        described["description"] = description
    if operation.request is not None:
        described["requestBody"] = {"required": True, "content": {
            JSON: {"schema": operation.request(settings)}}}
    if operation.public:
        described["security"] = []
    return described


def _responses(operation: Operation, limited: bool) -> dict:
    answers: dict = {}
    if operation.ok == 204:
        answers["204"] = {"description": "Done; no body."}
    else:
        json_body = operation.body if operation.body is not None else {"type": "object"}
        answers[str(operation.ok)] = {"description": "Success.", "content": {
            media: {"schema": json_body if media == JSON else {"type": "string"}}
            for media in operation.media}}
    for status, description in operation.also.items():
        answers[str(status)] = {"description": description}
    errors = {*operation.errors, *(() if operation.public else (401,)),
              *((429,) if limited else ())}
    for status in sorted(errors):
        answers[str(status)] = {"description": ERRORS[status], "content": {
            JSON: {"schema": "Error"}}}
    return answers


def _add_checks_made_in_code(document: dict, settings: Settings) -> dict:
    """Add what the schemas check in code: a question's length, the roster's model ids."""
    schemas = document["components"]["schemas"]
    for schema in schemas.values():
        question = schema.get("properties", {}).get("question")
        if question is not None and question.get("type") == "string":
            question.update(minLength=1, maxLength=settings.max_question_chars)
    models = list(settings.roster.models)
    council = schemas["SessionCreate"]["properties"]
    council["members"]["items"]["enum"] = models
    council["chairman"]["enum"] = [*models, None]
    return document


def _description() -> str:
    return ("Ask a council of LLMs. Submit a question (`202 Accepted`), then poll or stream the "
            "session until its round ends. Every error is "
            '`{"error": {"code", "message", "details"?}}`. Send the API key as '
            "`Authorization: Bearer <key>` or `X-API-Key`. Round statuses: "
            f"{', '.join(sorted(records.UNFINISHED | records.TERMINAL))}.")
