"""The HTTP API: validate, persist, enqueue, read. It never calls a model.

Gunicorn runs ``'api:create_app()'``.
"""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from shared.logs import configure_logging
from shared.settings import Settings, SettingsError, load_settings, production_problems


def create_app(config: Settings | dict | None = None) -> Flask:
    """Build the API for the given settings (read from the environment when not given).

    ``config`` may be a ``Settings`` value or a dict of overrides applied to the environment's.
    """
    settings = _settings_from(config)
    configure_logging(settings.log_level)
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=settings.max_body_bytes, JSON_SORT_KEYS=False)
    app.json.sort_keys = False

    if settings.trusted_proxies:
        # Only then is X-Forwarded-For believed, and only as many hops as there are proxies.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies,
                                x_proto=settings.trusted_proxies)

    from api import (
        admin,
        auth,
        console,
        errors,
        events,
        exports,
        headers,
        health,
        limits,
        observability,
        openai_compat,
        openapi,
        resources,
        session_edits,
        sessions,
    )

    resources.init_app(app, settings)
    _refuse_unsafe_production(app)
    errors.init_app(app)
    observability.init_app(app, settings)  # first: every later hook logs with the request id
    headers.init_app(app, settings)
    auth.init_app(app)
    limits.init_app(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(sessions.bp)
    app.register_blueprint(events.bp)
    app.register_blueprint(session_edits.bp)
    app.register_blueprint(exports.bp)
    app.register_blueprint(exports.public)
    app.register_blueprint(admin.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(openai_compat.bp)
    app.register_blueprint(console.bp)
    return app


def _refuse_unsafe_production(app: Flask) -> None:
    from api.resources import EXTENSION

    current = app.extensions[EXTENSION]
    if current.settings.environment != "production":
        return
    keys_exist = bool(current.settings.api_key) or bool(current.store.list_api_keys())
    problems = production_problems(current.settings, keys_exist)
    if problems:
        raise SettingsError("refusing to start in production: " + "; ".join(problems))


def _settings_from(config: Settings | dict | None) -> Settings:
    if isinstance(config, Settings):
        return config
    settings = load_settings()
    return settings.with_overrides(**config) if config else settings
