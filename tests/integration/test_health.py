"""Liveness, readiness and the roster."""

from __future__ import annotations

import pytest

from tests.conftest import CHAIRMAN, MEMBERS

pytestmark = pytest.mark.integration


def test_health_needs_nothing(client):
    assert client.get("/health").get_json() == {"status": "ok"}


def test_ready_checks_store_redis_and_broker(client):
    body = client.get("/ready").get_json()
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"store", "redis", "broker", "breakers"}
    assert all(check["ok"] for check in body["checks"].values())
    assert all(check["latency_ms"] >= 0 for check in body["checks"].values())
    assert body["open_breakers"] == body["checks"]["breakers"]["open"] == []


def test_ready_says_degraded_and_names_the_part_that_is_down(settings):
    from api import create_app

    broken = create_app(settings.with_overrides(
        redis_url="redis://127.0.0.1:1/0", redis_socket_timeout_s=0.5))
    response = broken.test_client().get("/ready")
    assert response.status_code == 200  # reads are still served from the store
    body = response.get_json()
    assert body["status"] == "degraded"
    assert body["unavailable"] == ["broker", "redis"]
    assert body["checks"]["store"]["ok"] is True


def test_models_lists_the_roster(client):
    models = client.get("/v1/models").get_json()["data"]
    assert {m["id"] for m in models} == {*MEMBERS.split(","), CHAIRMAN, "council/default"}
    assert [m["id"] for m in models if m["default_chairman"]] == [CHAIRMAN]


def test_models_show_each_breaker_and_may_be_kept_for_the_cache_ttl(client, app):
    from api.admin import fleet_breakers

    with app.test_request_context():
        fleet_breakers().for_model(CHAIRMAN).breaker.open()
    response = client.get("/v1/models")
    assert response.headers["Cache-Control"] == "private, max-age=300"
    states = {m["id"]: m.get("breaker") for m in response.get_json()["data"]}
    assert states[CHAIRMAN] == "open"
    assert {states[m] for m in MEMBERS.split(",")} == {"closed"}
