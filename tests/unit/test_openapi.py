"""The OpenAPI document describes every route the app serves, with its bodies and errors."""

from __future__ import annotations

import re

import pytest
import schemathesis

from api import create_app
from api.openapi import OPERATIONS, build_document, documented
from shared.settings import load_settings

IGNORED_METHODS = {"HEAD", "OPTIONS"}


@pytest.fixture(scope="module")
def app():
    return create_app(load_settings({"ENVIRONMENT": "test"}))


@pytest.fixture(scope="module")
def document(app):
    return build_document(app, app.extensions["llm_council"].settings)


def served(app) -> set[tuple[str, str, str]]:
    return {(re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), method.lower(), rule.endpoint)
            for rule in app.url_map.iter_rules() if documented(rule.endpoint)
            for method in rule.methods - IGNORED_METHODS}


def test_every_route_and_method_is_in_the_document(app, document):
    described = {(path, method, operation["operationId"])
                 for path, operations in document["paths"].items()
                 for method, operation in operations.items()}
    assert described == served(app)


def test_every_route_is_described_explicitly(app):
    missing = sorted({endpoint for _, _, endpoint in served(app)} - set(OPERATIONS))
    assert not missing, f"add these endpoints to api.openapi.OPERATIONS: {missing}"


def test_every_error_answer_has_the_error_body(document):
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            errors = {status: answer for status, answer in operation["responses"].items()
                      if int(status) >= 400}
            assert errors or operation.get("security") == [], f"{method} {path}"
            for answer in errors.values():
                schema = answer["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, f"{method} {path}"


def test_bodies_are_the_marshmallow_schemas_the_views_load(document, app):
    settings = app.extensions["llm_council"].settings
    create = document["components"]["schemas"]["SessionCreate"]
    assert create["required"] == ["question"] and create["additionalProperties"] is False
    assert create["properties"]["question"]["maxLength"] == settings.max_question_chars
    assert create["properties"]["mode"]["enum"] == ["council", "chat"]
    post = document["paths"]["/v1/sessions"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/SessionCreate"}
    assert set(post["responses"]) >= {"202", "400", "401", "413", "415", "422", "429", "503"}


def test_public_routes_need_no_key(document):
    public = {(path, method) for path, operations in document["paths"].items()
              for method, operation in operations.items() if operation.get("security") == []}
    assert public == {("/health", "get"), ("/ready", "get"), ("/metrics", "get"),
                      ("/v1/openapi.json", "get"), ("/v1/shared/{token}", "get")}
    assert set(document["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    assert document["security"] == [{"bearer": []}, {"apiKey": []}]  # every other route


def test_the_document_loads_as_openapi(document):
    operations = list(schemathesis.openapi.from_dict(document).get_all_operations())
    assert all(result.ok() for result in operations)
    assert len(operations) == sum(len(methods) for methods in document["paths"].values())


def test_the_document_is_served_without_a_key(app):
    response = app.test_client().get("/v1/openapi.json")
    assert response.status_code == 200
    assert response.get_json()["openapi"].startswith("3.0")
