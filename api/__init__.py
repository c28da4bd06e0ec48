"""The HTTP API: validate, persist, enqueue, read. It never calls a model.

Gunicorn runs ``'api:create_app()'``.
"""

from __future__ import annotations

from flask import Flask

from shared.logs import configure_logging
from shared.settings import Settings, load_settings


def create_app(config: Settings | dict | None = None) -> Flask:
    """Build the API for the given settings (read from the environment when not given).

    ``config`` may be a ``Settings`` value or a dict of overrides applied to the environment's.
    """
    settings = _settings_from(config)
    configure_logging(settings.log_level)
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=settings.max_body_bytes, JSON_SORT_KEYS=False)
    app.json.sort_keys = False

    from api import errors, health, resources, sessions

    resources.init_app(app, settings)
    errors.init_app(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(sessions.bp)
    return app


def _settings_from(config: Settings | dict | None) -> Settings:
    if isinstance(config, Settings):
        return config
    settings = load_settings()
    return settings.with_overrides(**config) if config else settings
