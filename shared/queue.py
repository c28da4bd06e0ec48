"""The job queue's contract: task names, queues, and the Celery configuration both sides use.

The API enqueues by task name and never imports ``workers``; the workers register tasks under
the same names. Task arguments are ids only: prompts and answers never travel through the broker.
"""

from __future__ import annotations

from celery import Celery

from shared.settings import Settings

RUN_ROUND = "workers.tasks.run_round"
SWEEP = "workers.tasks.sweep"

INTERACTIVE_QUEUE = "interactive"
QUEUES = (INTERACTIVE_QUEUE,)

# Redis forgets nothing it was told to deliver, but without an ack it redelivers only after the
# visibility timeout; it must outlast the longest round or a slow round would run twice.
VISIBILITY_MARGIN_S = 300


def celery_config(settings: Settings) -> dict:
    """Return the Celery configuration that DESIGN.md's run lifecycle needs."""
    transport = {
        "visibility_timeout": settings.round_time_limit_s + VISIBILITY_MARGIN_S,
        "socket_timeout": settings.redis_socket_timeout_s,
        "socket_connect_timeout": settings.redis_socket_timeout_s,
    }
    return {
        "broker_url": settings.effective_broker_url,
        "broker_transport_options": transport,
        "result_backend_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_time_limit": settings.round_time_limit_s,
        "task_soft_time_limit": max(1, settings.round_time_limit_s - 30),
        "task_default_queue": INTERACTIVE_QUEUE,
        "task_routes": {RUN_ROUND: {"queue": INTERACTIVE_QUEUE}},
        "task_serializer": "json",
        "accept_content": ["json"],
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "worker_hijack_root_logger": False,
        "worker_concurrency": settings.worker_concurrency,
        "beat_schedule": {
            "sweep-stale-rounds": {"task": SWEEP, "schedule": settings.sweep_interval_s},
        },
    }


def make_celery(settings: Settings, name: str = "llm_council") -> Celery:
    """Return a Celery app configured for ``settings`` (used by the API to enqueue)."""
    app = Celery(name, set_as_current=False)
    app.conf.update(celery_config(settings))
    return app
