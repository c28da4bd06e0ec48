"""Every bad request gets its status and a JSON error; nothing is stored or enqueued for it."""

from __future__ import annotations

import json

import pytest

from shared.queue import INTERACTIVE_QUEUE

pytestmark = pytest.mark.integration

GOOD = {"question": "Is this fine?"}


def post(client, body, content_type="application/json"):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post("/v1/sessions", data=data, content_type=content_type)


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({}, 400, "invalid_request"),
        ({"question": ""}, 400, "invalid_request"),
        ({"question": "   \n "}, 400, "invalid_request"),
        ({"question": 42}, 400, "invalid_request"),
        ({"question": "x" * 2001}, 400, "invalid_request"),
        ({"question": "bell \x07 rings"}, 400, "invalid_request"),
        ({**GOOD, "members": ["sim/alpha", "nobody/else"]}, 400, "invalid_request"),
        ({**GOOD, "members": ["sim/alpha"]}, 400, "invalid_request"),
        ({**GOOD, "members": ["sim/alpha", "sim/alpha"]}, 400, "invalid_request"),
        ({**GOOD, "chairman": "nobody/else"}, 400, "invalid_request"),
        ({**GOOD, "surprise": True}, 400, "invalid_request"),
        ("{not json", 400, "malformed_json"),
        ("[1, 2]", 400, "malformed_json"),
    ],
)
def test_invalid_submissions_are_refused_with_a_json_error(
    client, redis_server, body, status, code
):
    response = post(client, body)
    assert response.status_code == status
    assert response.get_json()["error"]["code"] == code
    assert response.get_json()["error"]["message"]
    assert_nothing_accepted(client, redis_server)


def test_the_wrong_content_type_is_415(client, redis_server):
    response = post(client, "question=hi", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert response.get_json()["error"]["code"] == "unsupported_media_type"
    assert_nothing_accepted(client, redis_server)


def test_a_body_over_the_limit_is_413_before_it_is_read(client, redis_server):
    response = post(client, {"question": "x" * (1024 * 1024 + 10)})
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "request_entity_too_large"
    assert_nothing_accepted(client, redis_server)


def test_unknown_sessions_and_methods_get_json_errors(client):
    missing = client.get("/v1/sessions/0123456789abcdef")
    assert missing.status_code == 404
    assert missing.get_json()["error"]["code"] == "not_found"
    assert client.post("/v1/sessions/nope/rounds", json=GOOD).status_code == 404
    assert client.post("/v1/sessions/nope/cancel").status_code == 404
    wrong_method = client.put("/v1/sessions")
    assert wrong_method.status_code == 405
    assert wrong_method.get_json()["error"]["code"] == "method_not_allowed"
    assert "POST" in wrong_method.headers["Allow"]
    assert client.get("/nowhere").get_json()["error"]["code"] == "not_found"


def test_bad_list_parameters_are_400(client):
    assert client.get("/v1/sessions?limit=0").status_code == 400
    assert client.get("/v1/sessions?limit=abc").status_code == 400
    assert client.get("/v1/sessions?cursor=%%%").get_json()["error"]["code"] == "invalid_cursor"


def assert_nothing_accepted(client, redis_server) -> None:
    assert client.get("/v1/sessions").get_json()["data"] == []
    assert redis_server.client().llen(INTERACTIVE_QUEUE) == 0
