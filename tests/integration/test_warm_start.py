"""A new API process opens its connections before its first request, and says what it could not.

A cold process made its first concurrent submits wait 200-330 ms (bench/RESULTS.md): each paid
for lazy imports and connections, and waited on the others' import locks.
"""

from __future__ import annotations

import json

import pytest

from api import create_app
from api.resources import EXTENSION, warm
from tests.support.processes import start_api, start_worker, wait_for

pytestmark = pytest.mark.integration


def test_warming_opens_the_store_redis_and_the_broker_before_any_request(app):
    assert warm(app) == {}
    current = app.extensions[EXTENSION]
    assert current._store is not None and current._redis is not None
    assert current._celery is not None and current._limits is not None
    assert app.test_client().post("/v1/sessions", json={"question": "Warm?"}).status_code == 202


def test_warming_without_redis_names_what_failed_and_the_api_still_serves(settings):
    broken = create_app(settings.with_overrides(
        redis_url="redis://127.0.0.1:1/0", redis_socket_timeout_s=0.5))
    failed = warm(broken)
    assert set(failed) == {"redis", "broker"}
    assert "ConnectionError" in failed["redis"]
    client = broken.test_client()
    assert client.get("/health").status_code == 200
    refused = client.post("/v1/sessions", json={"question": "Anyone there?"})
    assert refused.status_code == 503
    assert refused.get_json()["error"]["code"] == "broker_unavailable"


def test_each_gunicorn_worker_warms_and_tunes_its_collector_before_serving(environ):
    api, _ = start_api(environ, threads=4, workers=2,
                       arguments=("--config", "python:api.gunicorn_conf"))
    try:
        warmed = wait_for(lambda: len(_warmed(api.lines)) == 2 and _warmed(api.lines),
                          "both workers to warm")
    finally:
        api.stop()
    assert all("long-lived objects exempt from collection" in line for line in warmed)


def test_a_worker_and_its_prefork_children_tune_their_collectors(environ):
    worker = start_worker(environ, "tuned", arguments=("--pool", "prefork", "--concurrency", "2"))
    try:
        tuned = wait_for(lambda: len(_tuned(worker.lines)) == 3 and _tuned(worker.lines),
                         "the worker and both children to tune their collectors")
    finally:
        worker.stop()
    assert all(json.loads(line)["exempt_objects"] > 0 for line in tuned)


def _tuned(lines: list[str]) -> list[str]:
    return [line for line in lines if "collector tuned" in line]


def _warmed(lines: list[str]) -> list[str]:
    return [line for line in lines if "worker warmed" in line]
