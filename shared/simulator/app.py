"""The simulated provider's web application: OpenAI-compatible routes plus ``/_sim`` controls.

Routes::

    POST   /v1/chat/completions   a simulated completion (or the fault in force for the model)
    GET    /v1/models             the configured models and every model called so far
    GET    /_sim/stats            {"total", "calls": {model: n}, "connections", "in_flight",
                                   "outcomes": {kind: n}}
    POST   /_sim/reset            zero the counters and forget the recorded requests
    GET    /_sim/requests         the latest recorded requests (?model=<id>&limit=<n>)
    GET    /_sim/faults           the faults in force
    POST   /_sim/faults           put a fault in force (see ``faults.parse_fault``)
    DELETE /_sim/faults           lift every fault (or one model's, with ?model=<id>)

``connections`` counts the TCP connections that carried a request since the start or the last
reset, so tests can see whether clients reuse their connections.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass, field

from aiohttp import web

from shared.simulator import answers
from shared.simulator.faults import (
    ERROR,
    HANG,
    MALFORMED,
    RATE_LIMITED,
    Fault,
    FaultError,
    FaultPlan,
    Outcome,
    parse_fault,
)
from shared.simulator.ledger import Ledger

MAX_BODY_BYTES = 16 * 1024 * 1024
HTML_PAGE = (
    "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
    "<body><h1>Bad Gateway</h1><p>Simulated gateway error page.</p></body></html>"
)


@dataclass(frozen=True)
class SimConfig:
    """How the simulated provider behaves when it starts."""

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    seed: int = 0
    faults: Mapping[str, Fault] = field(default_factory=dict)
    models: tuple[str, ...] = ()
    max_recorded: int = 1000
    hang_s: float = 3600.0


class BadRequest(ValueError):
    """A request to the simulator is malformed."""


@dataclass
class Simulator:
    """The state one simulated provider keeps while it runs."""

    config: SimConfig
    plan: FaultPlan
    ledger: Ledger
    jitter: random.Random


SIMULATOR = web.AppKey("simulator", Simulator)


def create_sim_app(config: SimConfig | None = None) -> web.Application:
    """Build the simulated provider's application."""
    config = config or SimConfig()
    app = web.Application(
        middlewares=[count_connections, errors_as_json], client_max_size=MAX_BODY_BYTES
    )
    app[SIMULATOR] = Simulator(
        config=config,
        plan=FaultPlan(config.faults, config.seed),
        ledger=Ledger(config.max_recorded),
        jitter=random.Random(config.seed),
    )
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/_sim/stats", show_stats)
    app.router.add_post("/_sim/reset", reset)
    app.router.add_get("/_sim/requests", recorded_requests)
    app.router.add_get("/_sim/faults", show_faults)
    app.router.add_post("/_sim/faults", set_fault)
    app.router.add_delete("/_sim/faults", clear_faults)
    return app


@web.middleware
async def count_connections(request: web.Request, handler) -> web.StreamResponse:
    """Note the connection each request arrives on."""
    request.app[SIMULATOR].ledger.note_connection(request.transport)
    return await handler(request)


@web.middleware
async def errors_as_json(request: web.Request, handler) -> web.StreamResponse:
    """Answer bad requests and routing errors (404, 405, 413) as JSON, like a real provider."""
    try:
        return await handler(request)
    except BadRequest as error:
        return _error(400, str(error))
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return _error(error.status, error.reason)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """Answer one chat completion request, or fail it as the fault in force says."""
    sim = request.app[SIMULATOR]
    model, messages = await _read_completion_request(request)
    outcome = sim.plan.decide(model)
    sim.ledger.note_call(model, messages, outcome)
    sim.ledger.in_flight += 1
    try:
        await asyncio.sleep(_delay_s(sim, outcome.fault))
        if outcome.kind == HANG:
            await asyncio.sleep(sim.config.hang_s)
            return _error(504, "simulated hang ended")
        return _reply(outcome, model, messages)
    finally:
        sim.ledger.in_flight -= 1


async def list_models(request: web.Request) -> web.Response:
    """List the configured models and every model called so far."""
    sim = request.app[SIMULATOR]
    ids = sorted({*sim.config.models, *sim.ledger.models_seen})
    data = [{"id": i, "object": "model", "created": 0, "owned_by": "simulator"} for i in ids]
    return web.json_response({"object": "list", "data": data})


async def show_stats(request: web.Request) -> web.Response:
    """Show how many calls each model received and how many connections carried them."""
    return web.json_response(request.app[SIMULATOR].ledger.as_json())


async def reset(request: web.Request) -> web.Response:
    """Zero the counters and forget the recorded requests."""
    request.app[SIMULATOR].ledger.reset()
    return web.json_response({"reset": True})


async def recorded_requests(request: web.Request) -> web.Response:
    """Show the latest recorded requests, oldest first, optionally for one model."""
    model = request.query.get("model")
    recorded = [r for r in request.app[SIMULATOR].ledger.requests if model in (None, r["model"])]
    limit = request.query.get("limit")
    if limit is not None:
        if not limit.isdigit():
            raise BadRequest('"limit" must be a non-negative integer')
        recorded = recorded[len(recorded) - int(limit) :] if int(limit) else []
    return web.json_response(recorded)


async def show_faults(request: web.Request) -> web.Response:
    """Show the faults in force, by model id."""
    return web.json_response({"faults": request.app[SIMULATOR].plan.as_json()})


async def set_fault(request: web.Request) -> web.Response:
    """Put the fault the JSON body describes in force."""
    plan = request.app[SIMULATOR].plan
    try:
        model, fault = parse_fault(await _json_body(request))
    except FaultError as error:
        raise BadRequest(str(error)) from error
    plan.set(model, fault)
    return web.json_response({"faults": plan.as_json()})


async def clear_faults(request: web.Request) -> web.Response:
    """Lift every fault, or only the one of ``?model=<id>``."""
    plan = request.app[SIMULATOR].plan
    plan.clear(request.query.get("model"))
    return web.json_response({"faults": plan.as_json()})


async def _read_completion_request(request: web.Request) -> tuple[str, list[dict]]:
    body = await _json_body(request)
    model = body.get("model") if isinstance(body, dict) else None
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(model, str) or not model:
        raise BadRequest('"model" must be a model id')
    if not isinstance(messages, list) or not messages:
        raise BadRequest('"messages" must be a non-empty list')
    if not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
        raise BadRequest('every message must be an object with a "role"')
    return model, messages


async def _json_body(request: web.Request) -> object:
    try:
        return await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BadRequest("the body must be JSON") from error


def _delay_s(sim: Simulator, fault: Fault | None) -> float:
    latency_ms = sim.config.latency_ms
    if fault is not None and fault.latency_ms is not None:
        latency_ms = fault.latency_ms
    jitter_ms = sim.config.jitter_ms
    if jitter_ms:
        latency_ms += sim.jitter.uniform(-jitter_ms, jitter_ms)
    return max(0.0, latency_ms) / 1000


def _reply(outcome: Outcome, model: str, messages: list[dict]) -> web.Response:
    if outcome.kind == ERROR:
        return _error(500, "simulated provider error")
    if outcome.kind == RATE_LIMITED:
        return _rate_limited(outcome.fault.retry_after_s if outcome.fault else None)
    content = answers.compose(model, messages)
    body = answers.completion_body(model, messages, content)
    if outcome.kind == MALFORMED and outcome.fault is not None:
        return _malformed(outcome.fault.malformed, body)
    return web.json_response(body)


def _rate_limited(retry_after_s: float | None) -> web.Response:
    response = _error(429, "simulated rate limit")
    if retry_after_s is not None:
        seconds = int(retry_after_s) if retry_after_s == int(retry_after_s) else retry_after_s
        response.headers["Retry-After"] = str(seconds)
    return response


def _malformed(kind: str | None, body: dict) -> web.Response:
    if kind == "html":
        return web.Response(text=HTML_PAGE, content_type="text/html")
    if kind == "no_choices":
        return web.json_response({**body, "choices": []})
    if kind == "error_200":
        error = {"code": 502, "message": "simulated upstream error inside an HTTP 200 body"}
        return web.json_response({"error": error})
    text = json.dumps(body)
    return web.Response(text=text[: len(text) // 2], content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"code": status, "message": message}}, status=status)
