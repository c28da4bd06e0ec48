"""A worker's logs and metrics: the ids a task carries, and the host's metrics endpoint.

``workers.app`` imports this module, so its signal handlers are connected before the worker
starts. Each task's ids (its own, and the session, round and request it works for) are bound to
the logs while it runs. With ``WORKER_METRICS_PORT`` set, the worker's main process serves
``/metrics`` on that port: every process of the host that writes to ``PROMETHEUS_MULTIPROC_DIR``
(prefork children, other worker processes) is summed there; a second worker process of the same
host finds the port taken and leaves the serving to the first.
"""

from __future__ import annotations

import logging
import os
import threading

from celery.signals import (
    import_modules,
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_shutdown,
)
from prometheus_client import start_http_server

from shared.logs import bind_log_ids, unbind_log_ids
from shared.prometheus import mark_dead, remove_stale_files, scrape_registry
from shared.queue import DELIVER_WEBHOOK, REQUEST_ID, RUN_ROUND
from shared.settings import load_settings

log = logging.getLogger(__name__)

ROUND_TASKS = frozenset({RUN_ROUND, DELIVER_WEBHOOK})  # their arguments: session id, round no
MAX_REQUEST_ID_CHARS = 128

_tokens: dict[str, object] = {}
_tokens_lock = threading.Lock()


@import_modules.connect
def _clear_stale_samples(**_: object) -> None:
    # Sent as the worker starts, before it imports the task modules (and so the metrics):
    # this process has written no sample yet.
    folder = load_settings().prometheus_multiproc_dir
    if folder is not None:
        removed = remove_stale_files(folder)
        log.info("metric files of stopped processes removed",
                 extra={"folder": str(folder), "removed": removed})


@worker_init.connect
def _serve_metrics(**_: object) -> None:
    settings = load_settings()
    port = settings.effective_worker_metrics_port
    if not port:
        return
    registry = scrape_registry(settings.prometheus_multiproc_dir)
    try:
        start_http_server(port, registry=registry)
    except OSError as error:
        log.info("metrics port taken: another worker of this host serves it",
                 extra={"port": port, "error": str(error)})
        return
    log.info("serving worker metrics", extra={"port": port})


@worker_process_shutdown.connect
def _mark_child_dead(**_: object) -> None:
    mark_dead(load_settings().prometheus_multiproc_dir, os.getpid())


@task_prerun.connect
def _bind_task_ids(task_id: str | None = None, task=None, args=None, **_: object) -> None:
    headers = getattr(task.request, "headers", None) or {}
    request_id = headers.get(REQUEST_ID)
    ids = {"task_id": task_id}
    if isinstance(request_id, str) and len(request_id) <= MAX_REQUEST_ID_CHARS:
        ids["request_id"] = request_id
    if task.name in ROUND_TASKS and args and len(args) >= 2:
        ids.update(session_id=args[0], round_no=args[1])
    token = bind_log_ids(**ids)
    with _tokens_lock:
        _tokens[task_id] = token


@task_postrun.connect
def _unbind_task_ids(task_id: str | None = None, **_: object) -> None:
    with _tokens_lock:
        token = _tokens.pop(task_id, None)
    if token is not None:
        try:
            unbind_log_ids(token)
        except ValueError:  # bound in another context: nothing of it is left here
            pass
