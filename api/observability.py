"""What every request leaves behind: its id in the logs and the response, its metrics, and
``GET /metrics``.

A request's id is the client's ``X-Request-ID`` when that is a sane token, else a new one; it is
bound to every log line of the request, echoed in the response, and sent on with the rounds the
request enqueues. Metrics label a request by its route template (``/v1/sessions/<session_id>``),
never by its path, and by ``unmatched`` when no route matched, so their size stays fixed.
``/metrics`` is public unless ``METRICS_REQUIRE_KEY`` asks for an admin key.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Blueprint, Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.auth import require_admin
from api.resources import get_settings, resources
from shared.backlog import BrokerQueues, QueueLengthCollector
from shared.logs import bind_log_ids, unbind_log_ids
from shared.metrics import HTTP_REQUEST_DURATION, HTTP_REQUESTS
from shared.prometheus import scrape_registry
from shared.settings import Settings

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
QUIET_ENDPOINTS = frozenset({"health.health", "health.ready", "observability.public_metrics",
                             "observability.metrics"})


def init_app(app: Flask, settings: Settings) -> None:
    """Give every request an id and count it; serve ``/metrics`` (public unless configured)."""
    app.before_request(_start)
    app.after_request(_finish)
    app.teardown_request(_unbind)
    # The endpoint's name says whether it is public (``api.auth.PUBLIC_ENDPOINTS``).
    bp = Blueprint("observability", __name__)
    endpoint = "metrics" if settings.metrics_require_key else "public_metrics"
    bp.add_url_rule("/metrics", endpoint, metrics, methods=["GET"])
    app.register_blueprint(bp)


def metrics():
    """Return the Prometheus samples of every API process, and the queues' lengths."""
    if request.endpoint == "observability.metrics":
        require_admin()
    settings = get_settings()
    queues = BrokerQueues(settings, resources().celery)
    collector = QueueLengthCollector(lambda: queues.backlogs())
    registry = scrape_registry(settings.prometheus_multiproc_dir, [collector])
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


def request_id() -> str | None:
    """Return the current request's id."""
    return g.get("request_id")


def _start() -> None:
    offered = request.headers.get(REQUEST_ID_HEADER, "")
    g.request_id = offered if SANE_REQUEST_ID.match(offered) else uuid.uuid4().hex
    g.request_started = time.perf_counter()
    g.log_token = bind_log_ids(request_id=g.request_id)


def _finish(response: Response) -> Response:
    if "request_id" not in g:  # the request failed before ``_start`` ran
        _start()
    response.headers[REQUEST_ID_HEADER] = g.request_id
    elapsed = time.perf_counter() - g.request_started
    method = request.method if request.method in METHODS else "OTHER"
    route = request.url_rule.rule if request.url_rule is not None else UNMATCHED
    HTTP_REQUESTS.labels(method=method, route=route, status=str(response.status_code)).inc()
    HTTP_REQUEST_DURATION.labels(method=method, route=route).observe(elapsed)
    level = logging.DEBUG if request.endpoint in QUIET_ENDPOINTS else logging.INFO
    log.log(level, "request answered", extra={
        "method": method, "route": route, "status": response.status_code,
        "duration_ms": round(elapsed * 1000, 2)})
    return response


def _unbind(_error: BaseException | None) -> None:
    token = g.pop("log_token", None)
    if token is not None:
        unbind_log_ids(token)
