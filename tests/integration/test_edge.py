"""The HTTP edge under a careless or hostile client: rate limits, proxies, CORS, headers."""

from __future__ import annotations

import sys

import httpx
import pytest

from api import create_app
from shared.settings import SettingsError
from tests.support.processes import LoggedProcess, free_port, wait_for

pytestmark = pytest.mark.integration


def start_api(environ: dict, **extra: str) -> tuple[LoggedProcess, str]:
    """Start one API process under gunicorn, as production runs it."""
    port = free_port()
    argv = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1",
            "--worker-class", "gthread", "--threads", "4", "api:create_app()"]
    process = LoggedProcess(argv, {**environ, **extra}, f"api:{port}")
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: httpx.get(f"{url}/health").status_code == 200, "the API to answer")
    return process, url


@pytest.fixture
def two_apis(environ):
    limits = {"RATE_LIMIT_REQUESTS": "6", "RATE_LIMIT_WINDOW": "60"}
    started = [start_api(environ, **limits) for _ in range(2)]
    yield [url for _, url in started]
    for process, _ in started:
        process.stop()


def test_the_rate_limit_is_shared_by_two_api_processes(two_apis):
    first, second = two_apis
    statuses = [httpx.get(f"{url}/v1/sessions").status_code for url in [first, second] * 3]
    assert statuses == [200] * 6
    refused = httpx.get(f"{second}/v1/sessions")
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert refused.json()["error"]["code"] == "rate_limited"
    assert httpx.get(f"{first}/v1/sessions").status_code == 429


def test_a_forged_forwarded_for_does_not_change_the_bucket(two_apis):
    first, _ = two_apis
    for index in range(6):
        headers = {"X-Forwarded-For": f"203.0.113.{index}"}
        assert httpx.get(f"{first}/v1/sessions", headers=headers).status_code == 200
    forged = httpx.get(f"{first}/v1/sessions", headers={"X-Forwarded-For": "198.51.100.7"})
    assert forged.status_code == 429


def test_behind_a_trusted_proxy_the_forwarded_address_is_the_client(settings):
    app = create_app(settings.with_overrides(trusted_proxies=1, rate_limit_requests=2))
    client = app.test_client()
    for _ in range(2):
        assert client.get("/v1/sessions", headers={"X-Forwarded-For": "203.0.113.1"}
                          ).status_code == 200
    assert client.get("/v1/sessions", headers={"X-Forwarded-For": "203.0.113.1"}
                      ).status_code == 429
    assert client.get("/v1/sessions", headers={"X-Forwarded-For": "203.0.113.2"}
                      ).status_code == 200


def test_work_creating_posts_have_their_own_limit(settings):
    client = create_app(settings.with_overrides(submit_rate_limit_requests=2)).test_client()
    for _ in range(2):
        assert client.post("/v1/sessions", json={"question": "q"}).status_code == 202
    refused = client.post("/v1/sessions", json={"question": "q"})
    assert refused.status_code == 429
    assert client.get("/v1/sessions").status_code == 200
    assert len(client.get("/v1/sessions").get_json()["data"]) == 2


def test_cors_allows_only_the_listed_origins(settings):
    client = create_app(settings.with_overrides(
        cors_origins=("https://app.example",))).test_client()
    allowed = client.get("/v1/sessions", headers={"Origin": "https://app.example"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert allowed.headers["Access-Control-Allow-Credentials"] == "true"
    other = client.get("/v1/sessions", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers
    preflight = client.options("/v1/sessions", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "Idempotency-Key"})
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]


def test_a_wildcard_origin_never_comes_with_credentials(settings):
    client = create_app(settings.with_overrides(cors_origins=("*",))).test_client()
    response = client.get("/v1/sessions", headers={"Origin": "https://any.example"})
    assert response.headers["Access-Control-Allow-Origin"] in ("*", "https://any.example")
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_every_answer_carries_security_headers(settings, client):
    response = client.get("/v1/sessions")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"
    assert "Strict-Transport-Security" not in response.headers
    hsts = create_app(settings.with_overrides(hsts_max_age_s=3600)).test_client()
    assert "max-age=3600" in hsts.get("/health").headers["Strict-Transport-Security"]


def test_production_refuses_an_unsafe_configuration(settings):
    with pytest.raises(SettingsError) as refused:
        create_app(settings.with_overrides(environment="production"))
    message = str(refused.value)
    assert "API key" in message and "WEBHOOK_SECRET" in message and "MONGODB_URL" in message
    safe = settings.with_overrides(environment="production", api_key="k" * 32,
                                   webhook_secret="s" * 32, mongodb_url="mongodb://db:27017")
    from shared.settings import production_problems

    assert production_problems(safe, keys_exist=False) == []
    client = create_app(safe).test_client()
    assert client.get("/v1/openapi.json").status_code == 404
    assert client.get("/health").status_code == 200
