"""API keys and ownership: every session belongs to the key that made it."""

from __future__ import annotations

import logging
import time

import pytest

from shared.keys import issue_key

pytestmark = pytest.mark.integration


@pytest.fixture
def keys(app):
    store = app.extensions["llm_council"].store
    return {name: issue_key(store, name, scope)[1]
            for name, scope in (("alice", "client"), ("bob", "client"), ("root", "admin"))}


def as_key(raw: str) -> dict:
    return {"Authorization": f"Bearer {raw}"}


@pytest.fixture
def alices_session(client, keys):
    response = client.post("/v1/sessions", json={"question": "Alice asks"},
                           headers=as_key(keys["alice"]))
    assert response.status_code == 202
    return response.get_json()["id"]


def test_without_a_key_every_private_route_is_401_once_keys_exist(client, keys):
    response = client.get("/v1/sessions")
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert client.get("/v1/sessions", headers=as_key("llmc_forged")).status_code == 401
    assert client.get("/health").status_code == 200


def test_x_api_key_works_as_well_as_bearer(client, keys):
    assert client.get("/v1/sessions", headers={"X-API-Key": keys["bob"]}).status_code == 200


@pytest.mark.parametrize(("method", "path", "body"), [
    ("get", "/v1/sessions/{id}", None),
    ("patch", "/v1/sessions/{id}", {"title": "mine now"}),
    ("delete", "/v1/sessions/{id}", None),
    ("post", "/v1/sessions/{id}/cancel", None),
    ("post", "/v1/sessions/{id}/rounds", {"question": "hijack"}),
    ("post", "/v1/sessions/{id}/branch", {"round_no": 1}),
    ("post", "/v1/sessions/{id}/share", None),
    ("delete", "/v1/sessions/{id}/share", None),
    ("get", "/v1/sessions/{id}/export", None),
    ("get", "/v1/sessions/{id}/export?format=markdown", None),
])
def test_another_client_gets_404_on_every_route(client, keys, alices_session, method, path, body):
    url = path.format(id=alices_session)
    response = getattr(client, method)(url, json=body, headers=as_key(keys["bob"]))
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"
    mine = client.get(f"/v1/sessions/{alices_session}", headers=as_key(keys["alice"]))
    assert mine.status_code == 200 and mine.get_json()["title"] == "Alice asks"


def test_lists_and_exports_hold_only_the_callers_sessions(client, keys, alices_session):
    bobs = client.get("/v1/sessions", headers=as_key(keys["bob"])).get_json()["data"]
    assert bobs == []
    assert client.get("/v1/sessions/export", headers=as_key(keys["bob"])).get_json() == []
    client.delete("/v1/sessions", json={"confirm": "delete all my sessions"},
                  headers=as_key(keys["bob"]))
    alices = client.get("/v1/sessions", headers=as_key(keys["alice"])).get_json()["data"]
    assert [s["id"] for s in alices] == [alices_session]


def test_an_admin_key_may_read_every_session(client, keys, alices_session):
    admin = client.get(f"/v1/sessions/{alices_session}", headers=as_key(keys["root"]))
    assert admin.status_code == 200
    listed = client.get("/v1/sessions", headers=as_key(keys["root"])).get_json()["data"]
    assert alices_session in {s["id"] for s in listed}


def test_a_revoked_key_is_refused_at_once(app, client, keys, alices_session):
    store = app.extensions["llm_council"].store
    alice = next(k for k in store.list_api_keys() if k["name"] == "alice")
    client.get(f"/v1/sessions/{alices_session}", headers=as_key(keys["alice"]))
    assert store.revoke_api_key(alice["id"], time.time())
    response = client.get(f"/v1/sessions/{alices_session}", headers=as_key(keys["alice"]))
    assert response.status_code == 401


def test_the_same_idempotency_key_is_separate_per_client(client, keys):
    body = {"question": "Same words"}
    first = client.post("/v1/sessions", json=body,
                        headers={**as_key(keys["alice"]), "Idempotency-Key": "k"})
    second = client.post("/v1/sessions", json=body,
                         headers={**as_key(keys["bob"]), "Idempotency-Key": "k"})
    assert first.get_json()["id"] != second.get_json()["id"]


def test_keys_are_never_stored_or_logged_in_clear(app, client, keys, settings, caplog):
    caplog.set_level(logging.DEBUG)
    client.post("/v1/sessions", json={"question": "log me"}, headers=as_key(keys["alice"]))
    client.get("/v1/sessions", headers=as_key("llmc_wrong_key"))
    stored = b"".join(path.read_bytes() for path in settings.data_dir.glob("council.sqlite3*"))
    for raw in keys.values():
        assert raw.encode() not in stored
        assert raw not in caplog.text
    assert "llmc_wrong_key" not in caplog.text
    assert app.extensions["llm_council"].store.list_api_keys()[0]["key_hash"]


def test_a_configured_api_key_is_an_admin_key(settings):
    from api import create_app

    client = create_app(settings.with_overrides(api_key="configured-secret")).test_client()
    assert client.get("/v1/sessions").status_code == 401
    assert client.get("/v1/sessions", headers=as_key("configured-secret")).status_code == 200


def test_shared_views_need_no_key(client, keys, alices_session):
    shared = client.post(f"/v1/sessions/{alices_session}/share",
                         headers=as_key(keys["alice"])).get_json()
    public = client.get(shared["url"])
    assert public.status_code == 200
    assert public.get_json()["id"] == alices_session
