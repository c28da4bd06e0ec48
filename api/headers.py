"""Response headers every answer carries: CORS from an allow-list, and security headers."""

from __future__ import annotations

from flask import Flask
from flask_cors import CORS

from shared.settings import Settings

EXPOSED = ["Location", "Retry-After", "ETag", "X-Request-ID", "RateLimit-Limit",
           "RateLimit-Remaining", "RateLimit-Reset", "Idempotent-Replayed"]
ALLOWED_HEADERS = ["Authorization", "X-API-Key", "Content-Type", "Idempotency-Key",
                   "If-None-Match", "Last-Event-ID", "X-Request-ID"]


def init_app(app: Flask, settings: Settings) -> None:
    """Allow the configured origins only, and harden every response."""
    origins = list(settings.cors_origins)
    if origins:
        # A wildcard never goes with credentials: browsers would send cookies to anyone.
        CORS(app, origins=origins, expose_headers=EXPOSED, allow_headers=ALLOWED_HEADERS,
             supports_credentials="*" not in origins, max_age=600)

    @app.after_request
    def _harden(response):
        headers = response.headers
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "no-referrer")
        if response.mimetype == "application/json":
            headers.setdefault("Cache-Control", "no-store")
        if settings.hsts_max_age_s:
            headers.setdefault("Strict-Transport-Security",
                               f"max-age={settings.hsts_max_age_s}; includeSubDomains")
        return response
