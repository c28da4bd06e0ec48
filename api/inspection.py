"""The workers' own account of what they hold, asked through Celery's broadcast ``inspect``.

An inspect call waits for replies until its timeout (``INSPECT_TIMEOUT``), since it cannot know
how many workers there are. So the workers' statistics are asked first, which tells how many
answer; the other questions then end as soon as that many replied. Each API process keeps the
answers for ``CACHE_S``, and callers meanwhile share them: a burst of requests costs one inspect.
"""

from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass, field

from celery import Celery

from api.present import iso
from api.resources import Resources, resources
from shared.queue import DELIVER_WEBHOOK, RUN_ROUND

CACHE_S = 3.0
STATES = ("active", "reserved", "scheduled")
ROUND_TASKS = frozenset({RUN_ROUND, DELIVER_WEBHOOK})  # their arguments: session id, round no

_lock = threading.Lock()
_snapshots: weakref.WeakKeyDictionary[Resources, Snapshot] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Snapshot:
    """What every worker that answered reported at one moment."""

    taken_at: float
    stats: dict[str, dict] = field(default_factory=dict)
    held: dict[str, dict[str, list[dict]]] = field(default_factory=dict)  # state → worker → tasks
    queues: dict[str, list[dict]] = field(default_factory=dict)

    def workers(self) -> list[dict]:
        """Return each worker: its pool, its concurrency and how many tasks it holds."""
        return [self._worker(name, stats) for name, stats in sorted(self.stats.items())]

    def tasks(self, state: str) -> list[dict]:
        """Return the tasks the workers hold in one state (``active``, ``reserved``, ...)."""
        return [task_view(entry, state, worker, self.taken_at)
                for worker, entries in sorted(self.held.get(state, {}).items())
                for entry in entries]

    def find(self, task_id: str) -> dict | None:
        """Return a task that a worker holds, in whichever state."""
        return next((task for state in STATES for task in self.tasks(state)
                     if task["id"] == task_id), None)

    def _worker(self, name: str, stats: dict) -> dict:
        pool = stats.get("pool") or {}
        implementation = str(pool.get("implementation", "")).partition(":")[0]
        return {
            "name": name,
            "pid": stats.get("pid"),
            "pool": implementation.rsplit(".", 1)[-1] or None,
            "concurrency": pool.get("max-concurrency"),
            "active": len(self.held.get("active", {}).get(name) or []),
            "reserved": len(self.held.get("reserved", {}).get(name) or []),
            "scheduled": len(self.held.get("scheduled", {}).get(name) or []),
            "queues": [queue.get("name") for queue in self.queues.get(name) or []],
            "uptime_s": stats.get("uptime"),
            "tasks_accepted": sum((stats.get("total") or {}).values()),
        }


def current_snapshot() -> Snapshot:
    """Return this process's recent snapshot, inspecting the workers if it is too old."""
    current = resources()
    with _lock:
        cached = _snapshots.get(current)
        if cached is not None and time.monotonic() - cached.taken_at < CACHE_S:
            return cached
        # Hold the lock while asking: other requests wait for this answer instead of asking too.
        fresh = inspect_workers(current.celery, current.settings.inspect_timeout_s)
        _snapshots[current] = fresh
        return fresh


def inspect_workers(celery: Celery, timeout_s: float) -> Snapshot:
    """Ask every worker for its statistics, the tasks it holds and the queues it consumes."""
    started = time.monotonic()
    stats = celery.control.inspect(timeout=timeout_s).stats() or {}
    if not stats:
        return Snapshot(taken_at=started)
    inspect = celery.control.inspect(timeout=timeout_s, limit=len(stats))
    held = {"active": inspect.active() or {}, "reserved": inspect.reserved() or {},
            "scheduled": inspect.scheduled() or {}}
    return Snapshot(started, stats, held, inspect.active_queues() or {})


def task_view(entry: dict, state: str, worker: str, taken_at: float) -> dict:
    """Return what an inspect reply says about one task, with the round it carries."""
    request = entry.get("request", entry)  # scheduled tasks wrap theirs with an ETA
    delivery = request.get("delivery_info") or {}
    started = request.get("time_start")
    view = {
        "id": request.get("id"),
        "name": request.get("name"),
        "state": state,
        "worker": worker,
        "worker_pid": request.get("worker_pid"),
        "queue": delivery.get("routing_key"),
        "redelivered": delivery.get("redelivered"),
        "started_at": iso(started) if isinstance(started, int | float) else None,
        "eta": entry.get("eta"),
        "observed_at": iso(time.time() - (time.monotonic() - taken_at)),
    }
    return {**view, **round_of(view["name"], request.get("args"))}


def round_of(name: str | None, args: object) -> dict:
    """Return the session and round a round or webhook task carries (empty for other tasks)."""
    if name in ROUND_TASKS and isinstance(args, list | tuple) and len(args) >= 2:
        return {"session_id": args[0], "round_no": args[1]}
    return {}
