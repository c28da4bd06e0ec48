"""Inspection for the admin scope: workers, queues, tasks and breakers, and what to do about them.

Workers and the tasks they hold come from Celery's inspect (``api.inspection``, cached for a few
seconds); queue depths from the broker (``shared.backlog``); breakers from Redis, where every
worker keeps them (``shared.provider.breaker``). Revoking a task that carries a round also
cancels the round in the store, so neither a worker that never heard the revoke nor the sweeper
runs it later.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref

import pybreaker
from flask import Blueprint, request
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import RedisError

from api.admission import RETRY_AFTER_S, broker_error
from api.auth import require_admin
from api.errors import ApiError, error_response, not_found
from api.events import announce_cancelled
from api.inspection import current_snapshot, round_of
from api.present import iso
from api.resources import Resources, get_settings, get_store, resources
from shared import records
from shared.backlog import BrokerQueues
from shared.provider.breaker import FleetBreakers
from shared.provider.resilient import provider_key

log = logging.getLogger(__name__)

bp = Blueprint("admin", __name__, url_prefix="/v1/admin")

UNAVAILABLE = "the job queue or Redis did not answer; try again shortly"
REDIS_ONLY = frozenset({"admin.list_breakers", "admin.reset_breaker"})  # breakers live in Redis
LISTED_STATES = ("active", "reserved", "scheduled")

_lock = threading.Lock()
_breakers: weakref.WeakKeyDictionary[Resources, FleetBreakers] = weakref.WeakKeyDictionary()


@bp.before_request
def _admins_only() -> None:
    require_admin()
    if request.endpoint in REDIS_ONLY:
        resources().redis.ping()  # a RedisError is answered by ``_unavailable``
        return
    # Fail at once while the broker is down (checked at most once a second per process),
    # rather than after the inspect's attempts to reconnect.
    error = broker_error(resources())
    if error is not None:
        raise ApiError(503, "broker_unavailable", UNAVAILABLE, {"error": error},
                       headers={"Retry-After": str(RETRY_AFTER_S)})


@bp.errorhandler(BrokerError)
@bp.errorhandler(RedisError)
@bp.errorhandler(OSError)
def _unavailable(error: Exception):
    log.warning("inspection failed: the broker or Redis did not answer",
                extra={"error": str(error)})
    return error_response(503, "broker_unavailable", UNAVAILABLE,
                          {"error": type(error).__name__},
                          headers={"Retry-After": str(RETRY_AFTER_S)})


@bp.get("/workers")
def list_workers():
    """List the workers that answered: pool, concurrency, tasks active and reserved, queues."""
    snapshot = current_snapshot()
    return {"data": snapshot.workers(), "observed_at": _observed_at(snapshot.taken_at)}


@bp.get("/queues")
def list_queues():
    """Report each queue's depth and how long its oldest message has waited."""
    queues = BrokerQueues(get_settings(), resources().celery)
    data = [{"name": b.queue, "depth": b.depth, "oldest_age_s": b.oldest_age_s}
            for b in queues.backlogs()]
    return {"data": data, "oldest_age_known": not queues.amqp}


@bp.get("/tasks")
def list_tasks():
    """List the tasks the workers hold in one state: ``active`` (default), ``reserved`` or
    ``scheduled``."""
    state = request.args.get("state", "active")
    if state not in LISTED_STATES:
        raise ApiError(400, "invalid_request",
                       f"state must be one of {', '.join(LISTED_STATES)}")
    snapshot = current_snapshot()
    return {"data": snapshot.tasks(state), "observed_at": _observed_at(snapshot.taken_at)}


@bp.get("/tasks/<task_id>")
def get_task(task_id: str):
    """Return a task: its state, worker and timings, and the round it carries."""
    task = _locate(task_id)
    if task is None:
        raise not_found("task")
    return task


@bp.post("/tasks/<task_id>/revoke")
def revoke_task(task_id: str):
    """Revoke a task; if it carries a round, cancel that round too."""
    task = _locate(task_id)
    resources().celery.control.revoke(task_id)
    log.warning("task revoked by an admin", extra={"task_id": task_id})
    cancelled = None
    if task is not None and task.get("session_id"):
        cancelled = _cancel_round(task["session_id"], task["round_no"])
    return {"id": task_id, "revoked": True, "state": task["state"] if task else None,
            "round": cancelled}, 202


@bp.get("/breakers")
def list_breakers():
    """Report every model's circuit breaker: state, consecutive failures, when it opened."""
    fleet = fleet_breakers()
    if fleet is None:
        return {"data": [], "shared": False}
    return {"data": [_breaker_view(fleet, model_id) for model_id in _model_ids()],
            "shared": True}


@bp.post("/breakers/<path:model_id>/reset")
def reset_breaker(model_id: str):
    """Close a model's breaker for the whole fleet, forgetting its failures."""
    fleet = fleet_breakers()
    if model_id not in get_settings().roster.models or fleet is None:
        raise not_found("breaker")
    fleet.for_model(model_id).breaker.close()
    log.warning("circuit breaker reset by an admin", extra={"model": model_id})
    return _breaker_view(fleet, model_id)


def _locate(task_id: str) -> dict | None:
    """Find a task among the workers' (live) or the queues' (waiting); add its round."""
    task = current_snapshot().find(task_id)
    if task is None:
        waiting = BrokerQueues(get_settings(), resources().celery).find(task_id)
        if waiting is None:
            return None
        task = {"id": task_id, "name": waiting.name, "state": "queued", "worker": None,
                "queue": waiting.queue, "enqueued_at": iso(waiting.enqueued_at),
                **round_of(waiting.name, waiting.args)}
    if task.get("session_id"):
        task["round"] = _round_view(task["session_id"], task["round_no"])
    return task


def _round_view(session_id: str, round_no: int) -> dict | None:
    round_ = _stored_round(session_id, round_no)[1]
    if round_ is None:
        return None
    return {"status": round_["status"], "stage": round_["stage"], "attempts": round_["attempts"],
            "created_at": iso(round_["created_at"]), "started_at": iso(round_["started_at"]),
            "finished_at": iso(round_["finished_at"])}


def _cancel_round(session_id: str, round_no: int) -> dict | None:
    session, round_ = _stored_round(session_id, round_no)
    if round_ is None:
        return None
    was_queued = round_["status"] == records.QUEUED
    status = get_store().request_cancel(session_id, round_no, time.time())
    if status == records.CANCELLED and was_queued:
        announce_cancelled(session, round_no)
    return {"session_id": session_id, "round_no": round_no, "status": status}


def _stored_round(session_id: object, round_no: object) -> tuple[dict | None, dict | None]:
    """Return the session and round a task's arguments name (``None`` for what is not stored)."""
    if not isinstance(session_id, str) or not isinstance(round_no, int):
        return None, None
    session = get_store().get_session(session_id)
    if session is None or not 1 <= round_no <= len(session["rounds"]):
        return session, None
    return session, session["rounds"][round_no - 1]


def breakers_check() -> dict:
    """Report, for ``/ready``, which models' breakers are not closed (an open one skips its
    model: the service still works), and how long reading them took."""
    started = time.perf_counter()
    fleet = fleet_breakers()
    try:
        unhealthy = [] if fleet is None else [
            model_id for model_id in _model_ids()
            if fleet.for_model(model_id).state != pybreaker.STATE_CLOSED]
    except Exception as error:  # noqa: BLE001 - reported by name, like the other checks
        return {"ok": False, "error": type(error).__name__, "latency_ms": _ms(started)}
    return {"ok": True, "open": unhealthy, "latency_ms": _ms(started)}


def fleet_breakers() -> FleetBreakers | None:
    """Return this process's view of the fleet's breakers (``None`` when they are not shared)."""
    current = resources()
    settings = current.settings
    if not settings.redis_enabled:  # each worker keeps its breakers in its own memory
        return None
    with _lock:
        fleet = _breakers.get(current)
        if fleet is None:
            fleet = _breakers[current] = FleetBreakers(
                settings.circuit_breaker_fail_max, settings.circuit_breaker_timeout_s,
                provider_key(settings.provider_base_url), current.redis)
        return fleet


def _breaker_view(fleet: FleetBreakers, model_id: str) -> dict:
    breaker = fleet.for_model(model_id)
    opened_at = breaker.opened_at
    return {"model": model_id, "state": breaker.state, "failures": breaker.breaker.fail_counter,
            "fail_max": fleet.fail_max,
            "opened_at": iso(opened_at.timestamp()) if opened_at else None}


def _model_ids() -> list[str]:
    return list(get_settings().roster.models)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def _observed_at(taken_at: float) -> str:
    return iso(time.time() - (time.monotonic() - taken_at))

