"""Every failure reaches the client as ``{"error": {"code", "message", "details"?}}``."""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from kombu.exceptions import OperationalError as BrokerError
from marshmallow import ValidationError
from redis.exceptions import RedisError
from werkzeug.exceptions import HTTPException

from shared.store.base import StoreUnavailable

log = logging.getLogger(__name__)

STORE_RETRY_AFTER_S = 5


class ApiError(Exception):
    """An outcome other than the view's one success shape, raised at the edge."""

    def __init__(
        self, status: int, code: str, message: str, details: object = None,
        headers: dict | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}


def not_found(what: str = "session") -> ApiError:
    """Return the 404 for a resource that does not exist (or is not the caller's)."""
    return ApiError(404, "not_found", f"{what} not found")


def error_response(status: int, code: str, message: str, details: object = None, headers=None):
    """Build the JSON error response."""
    body: dict = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    response = jsonify(error=body)
    response.status_code = status
    response.headers.update(headers or {})
    return response


def init_app(app: Flask) -> None:
    """Register handlers that turn every exception into a JSON error."""

    @app.errorhandler(ApiError)
    def _api_error(error: ApiError):
        return error_response(error.status, error.code, error.message, error.details,
                              error.headers)

    @app.errorhandler(ValidationError)
    def _invalid(error: ValidationError):
        return error_response(400, "invalid_request", "the request is not valid",
                              error.normalized_messages())

    @app.errorhandler(StoreUnavailable)
    def _store_down(error: StoreUnavailable):
        log.error("store unavailable", extra={"error": str(error)})
        return error_response(503, "store_unavailable", "the session store is unavailable",
                              headers={"Retry-After": str(STORE_RETRY_AFTER_S)})

    @app.errorhandler(RedisError)
    @app.errorhandler(BrokerError)
    def _shared_state_down(error: Exception):
        log.error("redis or the broker unavailable", extra={"error": str(error)})
        return error_response(503, "redis_unavailable", "redis or the job queue is unavailable",
                              headers={"Retry-After": str(STORE_RETRY_AFTER_S)})

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException):
        code = (error.name or "error").lower().replace(" ", "_")
        headers = {k: v for k, v in error.get_headers() if k.lower() == "allow"}
        return error_response(error.code or 500, code, error.description or error.name,
                              headers=headers)

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        log.exception("unhandled error")
        return error_response(500, "internal_error", "an internal error occurred")
