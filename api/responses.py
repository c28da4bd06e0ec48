"""The shapes of response bodies, as marshmallow schemas, for the OpenAPI document.

The views build their bodies as plain dicts (``api.present``); these schemas describe them and
are never used to dump one. Nested calls (answers, ballots, the synthesis) are described as open
objects: their fields follow the stored records (``shared.records``).
"""

from __future__ import annotations

from marshmallow import Schema, fields

from shared import records

STATUSES = sorted(records.UNFINISHED | records.TERMINAL)


class ErrorDetail(Schema):
    code = fields.String(required=True, metadata={"description": "a stable, machine-readable code"})
    message = fields.String(required=True)
    details = fields.Raw(metadata={"description": "what was wrong, when known"})


class ErrorBody(Schema):
    error = fields.Nested(ErrorDetail, required=True)


class ModelRef(Schema):
    id = fields.String(required=True)
    name = fields.String(required=True)


class Usage(Schema):
    prompt_tokens = fields.Integer()
    completion_tokens = fields.Integer()
    total_tokens = fields.Integer()
    cost = fields.Float(metadata={"description": "US dollars, where known"})


class Round(Schema):
    round_no = fields.Integer(required=True)
    question = fields.String(required=True)
    status = fields.String(required=True, metadata={"enum": STATUSES})
    stage = fields.String(allow_none=True, metadata={"enum": list(records.STAGES)})
    attempts = fields.Integer()
    created_at = fields.String(metadata={"format": "date-time"})
    started_at = fields.String(allow_none=True, metadata={"format": "date-time"})
    finished_at = fields.String(allow_none=True, metadata={"format": "date-time"})
    answers = fields.List(fields.Dict())
    ballots = fields.List(fields.Dict())
    aggregate = fields.List(fields.Dict(), allow_none=True)
    synthesis = fields.Dict(allow_none=True)
    notes = fields.List(fields.String())
    error = fields.String(allow_none=True)
    usage = fields.Nested(Usage)


class SessionSummary(Schema):
    id = fields.String(required=True)
    title = fields.String()
    status = fields.String(metadata={"enum": STATUSES})
    pinned = fields.Boolean()
    created_at = fields.String(metadata={"format": "date-time"})
    updated_at = fields.String(metadata={"format": "date-time"})
    round_count = fields.Integer()
    links = fields.Dict()


class Session(SessionSummary):
    mode = fields.String(metadata={"enum": list(records.MODES)})
    priority = fields.String(metadata={"enum": list(records.PRIORITIES)})
    branched_from = fields.Dict(allow_none=True)
    members = fields.List(fields.Nested(ModelRef))
    chairman = fields.Nested(ModelRef)
    rounds = fields.List(fields.Nested(Round))
    usage = fields.Nested(Usage)
    shared = fields.Boolean(metadata={"description": "the owner's view only"})
    callback_url = fields.String(allow_none=True)
    deliveries = fields.List(fields.Dict())


class SessionPage(Schema):
    data = fields.List(fields.Nested(SessionSummary), required=True)
    next_cursor = fields.String(allow_none=True)


class Deleted(Schema):
    deleted = fields.Integer(required=True)


class Share(Schema):
    token = fields.String(required=True)
    url = fields.String(required=True)


class RosterModel(Schema):
    id = fields.String(required=True)
    object = fields.String(metadata={"enum": ["model"]})
    created = fields.Integer()
    owned_by = fields.String(metadata={"description": "the provider; `llm-council` for councils"})
    name = fields.String(required=True)
    default_member = fields.Boolean()
    default_chairman = fields.Boolean()
    breaker = fields.String(allow_none=True, metadata={
        "enum": ["closed", "open", "half-open", None],
        "description": "the fleet's circuit breaker for a roster model; null when unknown"})
    council = fields.Dict(metadata={
        "description": "a council's members, chairman, min_answers and min_ballots"})


class RosterList(Schema):
    object = fields.String(metadata={"enum": ["list"]})
    data = fields.List(fields.Nested(RosterModel), required=True)


class ChatCompletion(Schema):
    id = fields.String(required=True)
    object = fields.String(required=True, metadata={"enum": ["chat.completion"]})
    created = fields.Integer(required=True)
    model = fields.String(required=True)
    choices = fields.List(fields.Dict(), required=True, metadata={
        "description": "one choice: its message's content is the council's final answer"})
    usage = fields.Nested(Usage, required=True)
    council = fields.Dict(metadata={
        "description": "session_id, status, poll_url, answers, aggregate, notes, usage"})


class Health(Schema):
    status = fields.String(required=True)


class Readiness(Schema):
    status = fields.String(required=True, metadata={"enum": ["ready", "degraded"]})
    checks = fields.Dict(required=True, metadata={
        "description": "each dependency: ok, latency_ms, and error when it failed"})
    unavailable = fields.List(fields.String())
    open_breakers = fields.List(fields.String())
    message = fields.String()


class Worker(Schema):
    name = fields.String(required=True)
    pid = fields.Integer(allow_none=True)
    pool = fields.String(allow_none=True)
    concurrency = fields.Integer(allow_none=True)
    active = fields.Integer()
    reserved = fields.Integer()
    scheduled = fields.Integer()
    queues = fields.List(fields.String())
    uptime_s = fields.Float(allow_none=True)
    tasks_accepted = fields.Integer()


class WorkerList(Schema):
    data = fields.List(fields.Nested(Worker), required=True)
    observed_at = fields.String(metadata={"format": "date-time"})


class QueueDepth(Schema):
    name = fields.String(required=True)
    depth = fields.Integer(required=True)
    oldest_age_s = fields.Float(allow_none=True, metadata={
        "description": "seconds the oldest waiting message has waited; null when unknown"})


class QueueList(Schema):
    data = fields.List(fields.Nested(QueueDepth), required=True)
    oldest_age_known = fields.Boolean()


class RoundState(Schema):
    status = fields.String(metadata={"enum": STATUSES})
    stage = fields.String(allow_none=True)
    attempts = fields.Integer()
    created_at = fields.String(allow_none=True)
    started_at = fields.String(allow_none=True)
    finished_at = fields.String(allow_none=True)


class Task(Schema):
    id = fields.String(required=True)
    name = fields.String(allow_none=True)
    state = fields.String(required=True,
                          metadata={"enum": ["active", "reserved", "scheduled", "queued"]})
    worker = fields.String(allow_none=True)
    worker_pid = fields.Integer(allow_none=True)
    queue = fields.String(allow_none=True)
    redelivered = fields.Boolean(allow_none=True)
    started_at = fields.String(allow_none=True)
    enqueued_at = fields.String(allow_none=True)
    eta = fields.String(allow_none=True)
    session_id = fields.String()
    round_no = fields.Integer()
    round = fields.Nested(RoundState, allow_none=True)


class TaskList(Schema):
    data = fields.List(fields.Nested(Task), required=True)
    observed_at = fields.String()


class CancelledRound(Schema):
    session_id = fields.String()
    round_no = fields.Integer()
    status = fields.String(allow_none=True)


class Revoked(Schema):
    id = fields.String(required=True)
    revoked = fields.Boolean(required=True)
    state = fields.String(allow_none=True)
    round = fields.Nested(CancelledRound, allow_none=True)


class Breaker(Schema):
    model = fields.String(required=True)
    state = fields.String(required=True, metadata={"enum": ["closed", "open", "half-open"]})
    failures = fields.Integer()
    fail_max = fields.Integer()
    opened_at = fields.String(allow_none=True)


class BreakerList(Schema):
    data = fields.List(fields.Nested(Breaker), required=True)
    shared = fields.Boolean()
