"""The Celery application the worker, beat and Flower processes load (``celery -A workers.app``).

Configuration is read lazily, when Celery first needs it, so importing this module reads no
environment and opens no connection.
"""

from __future__ import annotations

import logging

from celery import Celery
from celery.signals import worker_process_init, worker_ready

from shared.heap import tune_collector
from shared.logs import configure_logging
from shared.queue import celery_config
from shared.settings import load_settings
from workers import observability  # noqa: F401 - connects the logging and metrics signals


class CouncilCelery(Celery):
    """Celery that configures itself from the service settings on first use."""

    def on_configure(self) -> None:
        settings = load_settings()
        configure_logging(settings.log_level)
        self.conf.update(celery_config(settings))


app = CouncilCelery("llm_council", include=["workers.tasks"])

log = logging.getLogger(__name__)


@worker_ready.connect
@worker_process_init.connect  # a prefork child, which runs the tasks
def _tune_collector(**_: object) -> None:
    log.info("collector tuned", extra={"exempt_objects": tune_collector()})
