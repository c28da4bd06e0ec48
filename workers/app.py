"""The Celery application the worker, beat and Flower processes load (``celery -A workers.app``).

Configuration is read lazily, when Celery first needs it, so importing this module reads no
environment and opens no connection.
"""

from __future__ import annotations

from celery import Celery

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
