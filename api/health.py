"""Liveness, readiness and the roster."""

from __future__ import annotations

import time

from flask import Blueprint
from redis.exceptions import RedisError

from api.admin import breakers_check, fleet_breakers
from api.errors import error_response
from api.resources import get_settings, resources
from shared.presets import CouncilPreset, default_council
from shared.settings import Settings

bp = Blueprint("health", __name__)

COUNCIL_OWNER = "llm-council"


@bp.get("/health")
def health():
    """Report that the process is alive (no dependency is checked)."""
    return {"status": "ok"}


@bp.get("/ready")
def ready():
    """Check the store, Redis and the broker; 503 when the store fails, "degraded" otherwise.

    Without Redis or the broker the API still serves reads from the store (new work gets 503
    with ``Retry-After``), so it stays ready, and says what it cannot do.
    """
    current = resources()
    checks = {
        "store": current.store.ping,
        "redis": current.redis.ping,
        "broker": lambda: _ping_broker(current.celery),
    }
    report = {name: _timed(check) for name, check in checks.items()}
    failed = sorted(name for name, result in report.items() if not result["ok"])
    report["breakers"] = breakers_check()  # told, not failed: an open breaker skips one model
    open_breakers = report["breakers"].get("open", [])
    if "store" in failed:
        return error_response(503, "not_ready", f"unavailable: {', '.join(failed)}", report,
                              headers={"Retry-After": "5"})
    if failed:
        return {"status": "degraded", "unavailable": failed, "checks": report,
                "open_breakers": open_breakers,
                "message": "reads are served; new work is refused until "
                           f"{' and '.join(failed)} answer again"}
    return {"status": "ready", "checks": report, "open_breakers": open_breakers}


@bp.get("/v1/models")
def models():
    """List the roster (every model a session may use) and the councils, as OpenAI models.

    A council (``council/default``, ``council/<preset>``) is the model that
    ``POST /v1/chat/completions`` answers with.
    """
    settings = get_settings()
    roster = settings.roster
    councils = [default_council(roster), *settings.council_presets.values()]
    body = {
        "object": "list",
        "data": [
            *({"id": m.id, "object": "model", "created": 0, "owned_by": _owner(m.id),
               "name": m.name, "default_member": m.id in roster.members,
               "default_chairman": m.id == roster.chairman, "breaker": _breaker_state(m.id)}
              for m in roster.models.values()),
            *({"id": c.model_id, "object": "model", "created": 0, "owned_by": COUNCIL_OWNER,
               "name": f"Council ({c.name})", "default_member": False,
               "default_chairman": False, "council": _council(c, settings)}
              for c in councils),
        ],
    }
    # The roster is configuration: clients may keep the list; breaker states may be that old.
    return body, 200, {"Cache-Control": f"private, max-age={settings.cache_ttl_models_s}"}


def _breaker_state(model_id: str) -> str | None:
    """Return the fleet's breaker state for a model; ``None`` when it cannot be read."""
    fleet = fleet_breakers()
    if fleet is None:
        return None
    try:
        return fleet.for_model(model_id).state
    except RedisError:
        return None


def _owner(model_id: str) -> str:
    return model_id.split("/", 1)[0] if "/" in model_id else COUNCIL_OWNER


def _council(council: CouncilPreset, settings: Settings) -> dict:
    return {"members": list(council.members), "chairman": council.chairman,
            "min_answers": council.min_answers or settings.council_min_answers,
            "min_ballots": council.min_ballots or settings.council_min_ballots}


def _ping_broker(celery) -> None:
    with celery.connection_for_write() as connection:
        connection.ensure_connection(max_retries=0, timeout=get_settings().redis_socket_timeout_s)


def _timed(check) -> dict:
    started = time.perf_counter()
    try:
        check()
    except Exception as error:  # noqa: BLE001 - any failure means "not ready", reported by name
        return {"ok": False, "error": type(error).__name__, "latency_ms": _ms(started)}
    return {"ok": True, "latency_ms": _ms(started)}


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
