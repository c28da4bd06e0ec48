"""Fuzz every operation of the generated OpenAPI document against the app (schemathesis).

Requests go to the WSGI app in this process, which runs on a real Redis server and the SQLite
store; no worker runs, so submitted rounds wait in the queue. Each operation gets valid and
invalid requests, and an operation on one session gets them once more for a session that exists
(its round ended, as if a worker had run it). Every answer must be below 500, and every error
the JSON error body.
``FUZZ_EXAMPLES`` sets the examples per operation and kind (a few hundred cases in all by
default; raise it to fuzz longer).
"""

from __future__ import annotations

import json
import os
import time

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from api import create_app
from shared import records

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "6"))
INSPECT_TIMEOUT_S = 0.2


def error_bodies_are_json(ctx, response, case) -> None:
    """Every 4xx and 5xx answer is ``{"error": {"code", "message", ...}}`` as JSON."""
    if response.status_code < 400:
        return
    content_type = (response.headers.get("content-type") or [""])[0]
    assert content_type.startswith("application/json"), (
        f"{response.status_code} answered as {content_type!r}")
    body = json.loads(response.content)
    error = body.get("error") if isinstance(body, dict) else None
    assert isinstance(error, dict), f"no error object in {body!r}"
    assert isinstance(error.get("code"), str) and isinstance(error.get("message"), str), body


def fuzz(operation, mode: GenerationMode, sent: list, **fixed) -> None:
    """Send ``EXAMPLES`` generated requests to one operation; raise on the first bad answer."""

    @given(case=operation.as_strategy(mode, **fixed))
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def send(case):
        sent.append(case)
        case.call_and_validate(checks=[not_a_server_error, error_bodies_are_json])

    send()


def ended_session(app) -> str:
    """Store a session whose round completed, as a worker would have left it."""
    resources = app.extensions["llm_council"]
    store, roster = resources.store, resources.settings.roster
    session = records.new_session("What is fuzzing?", roster.members, roster.chairman)
    store.create_session(session)
    now = time.time()
    claim = store.claim_round(session["id"], 1, now, now + 60, 3)
    store.finish_round(session["id"], 1, claim.attempt, records.COMPLETED, {"notes": []})
    return session["id"]


def on_session(operation, session_id: str) -> dict:
    fixed: dict = {"path_parameters": {"session_id": session_id}}
    if operation.label == "GET /v1/sessions/{session_id}":
        fixed["query"] = {"wait": 0}  # an ended session never changes: a wait lasts in full
    return fixed


@pytest.fixture
def app(settings):
    # No worker answers here: a short inspect timeout keeps the admin routes quick.
    return create_app(settings.with_overrides(inspect_timeout_s=INSPECT_TIMEOUT_S))


def test_no_operation_answers_5xx_or_a_non_json_error(app):
    api = schemathesis.openapi.from_wsgi("/v1/openapi.json", app)
    operations = [result.ok() for result in api.get_all_operations()]
    sent: list = []
    failures = []
    runs = [(operation, {}) for operation in operations]
    runs += [(operation, on_session(operation, ended_session(app)))
             for operation in operations if "{session_id}" in operation.path]
    for operation, fixed in runs:
        for mode in GenerationMode:
            try:
                fuzz(operation, mode, sent, **fixed)
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE, operation.label  # nothing to get wrong
            except (Exception, BaseExceptionGroup) as error:  # all are fuzzed, then reported
                failures.append(f"{operation.label} {fixed} ({mode}): {error}")
    assert not failures, "\n\n".join(failures)
    assert len(operations) >= 25 and len(sent) >= len(operations) * EXAMPLES
