"""Gunicorn's hooks for the API (``gunicorn --config python:api.gunicorn_conf 'api:create_app()'``).

The master starts the API's process tree, so it prepares the metrics folder that the workers
share (``shared.prometheus``): ``PROMETHEUS_MULTIPROC_DIR`` emptied at start, or, when it is
unset, a private temporary folder, exported to the workers and removed at exit; and every worker
that exits is marked dead. The master imports no metrics itself: prometheus_client decides at
import whether it runs in multiprocess mode, so it must first be imported after the folder is
exported, in the workers.

Each worker, once it has loaded the app, opens its connections before it takes a request and
then tunes the garbage collector for a long-lived process (``shared.heap``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from shared.settings import load_settings

MULTIPROC_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

_private_folder: Path | None = None


def on_starting(server) -> None:
    """Empty (or make) the metrics folder before any worker starts."""
    global _private_folder
    folder = load_settings().prometheus_multiproc_dir
    if folder is None:
        folder = _private_folder = Path(tempfile.mkdtemp(prefix="llm-council-metrics-"))
        # prometheus_client reads the variable itself, in each worker.
        os.environ[MULTIPROC_VARIABLE] = str(folder)
    from shared.prometheus import reset_folder

    reset_folder(folder)
    server.log.info("metrics folder ready: %s", folder)


def post_worker_init(worker) -> None:
    """Warm the new worker's connections, then keep the collector off what it holds for good."""
    from api.resources import warm
    from shared.heap import tune_collector

    warm(worker.wsgi)
    frozen = tune_collector()
    worker.log.info("worker warmed; %d long-lived objects exempt from collection", frozen)


def child_exit(server, worker) -> None:
    """Mark an exited worker dead, which drops its live gauges."""
    from shared.prometheus import mark_dead

    mark_dead(load_settings().prometheus_multiproc_dir, worker.pid)


def on_exit(server) -> None:
    """Remove the private metrics folder, if this master made one."""
    if _private_folder is not None:
        shutil.rmtree(_private_folder, ignore_errors=True)
