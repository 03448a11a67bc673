"""The OpenAPI document is valid, lists every status, and says what the code really sends and accepts."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate

from jollyjet.jobs.audit import AuditRun
from jollyjet.products.record import ProductRecord, product_to_api
from jollyjet.products.schemas import _NOT_BLANK, MONEY_PATTERN, Money, ProductInputSchema
from tests.support.api import PRODUCTS
from tests.support.factories import product_payload

# Every status each operation answers (besides "default"), as the code does.
EXPECTED_STATUSES = {
    ("get", "/api/v1/products"): {200, 304, 400, 422, 429, 503},
    ("post", "/api/v1/products"): {201, 400, 401, 409, 413, 415, 422, 429, 503},
    ("get", "/api/v1/products/count"): {200, 304, 400, 422, 429, 503},
    ("get", "/api/v1/products/{product_id}"): {200, 304, 404, 503},
    ("put", "/api/v1/products/{product_id}"): {200, 400, 401, 404, 409, 412, 413, 415, 422, 429, 503},
    ("patch", "/api/v1/products/{product_id}"): {200, 400, 401, 404, 409, 412, 413, 415, 422, 429, 503},
    ("delete", "/api/v1/products/{product_id}"): {204, 401, 404, 412, 429, 503},
    ("get", "/api/v1/categories"): {200, 304, 503},
    ("post", "/api/v1/cache/{job}"): {202, 401, 409, 429, 503},
    ("get", "/api/v1/tasks/{task_id}"): {200, 401, 404, 429, 503},
    ("get", "/api/v1/cache/audit/latest"): {200, 401, 404, 429, 503},
    ("delete", "/api/v1/cache"): {200, 401, 409, 429, 503},
    ("get", "/health/live"): {200},
    ("get", "/health/ready"): {200, 503},
    # Monitoring: MongoDB or Redis down shows in the figures (null, redis.up false), never as a 503.
    ("get", "/api/v1/cache/stats"): {200, 401, 429},
    ("get", "/metrics"): {200},
}


@pytest.fixture
def document(client: FlaskClient) -> dict[str, Any]:
    body: dict[str, Any] = client.get("/api/openapi.json").get_json()
    return body


def _walk(node: Any) -> Any:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _component(document: dict[str, Any], name: str) -> OAS30Validator:
    """A validator for one component schema, resolving $refs against the whole document."""
    schema = {**document["components"]["schemas"][name], "components": document["components"]}
    return OAS30Validator(schema)


def test_the_document_is_valid_openapi_3(document: dict[str, Any]) -> None:
    validate(document)  # raised before: "maximum": "1000000000.00" is a string, not a number


def test_bounds_are_numbers(document: dict[str, Any]) -> None:
    for node in _walk(document):
        for key in ("minimum", "maximum", "multipleOf"):
            if key in node:
                assert isinstance(node[key], int | float) and not isinstance(node[key], bool), node


def test_every_operation_lists_every_status_it_answers(document: dict[str, Any]) -> None:
    listed = {
        (method, path): {int(code) for code in operation["responses"] if code != "default"}
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method != "parameters"
    }
    assert listed == EXPECTED_STATUSES
    for (method, path), codes in EXPECTED_STATUSES.items():
        responses = document["paths"][path][method]["responses"]
        for code in codes - {200, 201, 202, 204, 304} if path != "/health/ready" else ():
            # Errors are described and carry the Error body; 401 and 503 name their headers.
            content = responses[str(code)]["content"]["application/json"]["schema"]
            assert content == {"$ref": "#/components/schemas/Error"}, (method, path, code)
        if 401 in codes:
            assert "WWW-Authenticate" in responses["401"]["headers"]
        if 429 in codes:
            assert "Retry-After" in responses["429"]["headers"]
        if 503 in codes and path.startswith("/api"):
            assert "Retry-After" in responses["503"]["headers"]


def test_created_products_link_to_the_id_operations(document: dict[str, Any]) -> None:
    links = document["paths"]["/api/v1/products"]["post"]["responses"]["201"]["links"]
    operation_ids = {
        operation["operationId"]
        for operation in document["paths"]["/api/v1/products/{product_id}"].values()
        if isinstance(operation, dict) and "operationId" in operation
    }
    assert {link["operationId"] for link in links.values()} == operation_ids
    assert all(link["parameters"] == {"product_id": "$response.body#/id"} for link in links.values())


def test_product_schema_is_what_product_to_api_sends(document: dict[str, Any]) -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    record = ProductRecord(
        id="6b0737ec95a6d978e6772a34",
        sku="AUD-000",
        name="Headphones",
        description="",
        price_cents=1999,
        currency="USD",
        category="audio",
        tags=("a",),
        stock=0,
        is_active=True,
        version=1,
        created_at=moment,
        updated_at=moment,
    )
    body = product_to_api(record)
    schema = document["components"]["schemas"]["Product"]
    # Field by field: the same names, all of them always sent, and each value valid.
    assert set(body) == set(schema["properties"]) == set(schema["required"])
    _component(document, "Product").validate(body)


def test_served_bodies_match_their_schemas(client: FlaskClient, auth: dict[str, str], document: dict[str, Any]) -> None:
    created = client.post(PRODUCTS, json=product_payload(), headers=auth).get_json()
    _component(document, "Product").validate(created)
    _component(document, "Count").validate(client.get(f"{PRODUCTS}/count").get_json())
    for row in client.get("/api/v1/categories").get_json():
        _component(document, "Category").validate(row)
    _component(document, "Ready").validate(client.get("/health/ready").get_json())


def test_audit_schema_is_what_the_audit_store_sends(app: Flask, document: dict[str, Any]) -> None:
    moment = datetime(2026, 1, 2, tzinfo=UTC)
    run = AuditRun(
        started_at=moment,
        finished_at=moment,
        duration_s=0.5,
        mode="full",
        keys_scanned=3,
        keys_checked=3,
        tombstones=0,
        drift={"stale_version": 1},
        repaired={"stale_version": 1},
        repair_enabled=True,
    )
    with app.app_context():
        run.save()
        body = run.as_dict()
    schema = document["components"]["schemas"]["AuditRun"]
    assert set(body) == set(schema["properties"]) == set(schema["required"])
    _component(document, "AuditRun").validate(body)


def _money_accepts(text: str) -> bool:
    try:
        Money()._validated(text)
    except ValidationError:
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(st.from_regex(r"-?[0-9]{1,12}(\.[0-9]{1,4})?", fullmatch=True) | st.text(max_size=14))
def test_money_text_is_accepted_exactly_when_the_documented_pattern_matches(text: str) -> None:
    assert _money_accepts(text) == bool(re.fullmatch(MONEY_PATTERN[1:-1], text))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=6))
def test_text_fields_are_accepted_exactly_when_the_documented_pattern_matches(text: str) -> None:
    # The document's pattern is searched (JSON Schema); the server's rule must agree on
    # every character, including those Python and ECMA 262 disagree about in \s.
    errors = ProductInputSchema(partial=True).validate({"name": text}) if text else {"name": "empty"}
    assert ("name" not in errors) == bool(re.search(_NOT_BLANK, text)), (text, errors)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("TRACE", PRODUCTS, {"GET", "HEAD", "OPTIONS", "POST"}),
        ("PUT", PRODUCTS, {"GET", "HEAD", "OPTIONS", "POST"}),
        ("POST", "/health/live", {"GET", "HEAD", "OPTIONS"}),
        # /products/count is not also a product id: PUT there is not a write to product "count".
        ("PUT", f"{PRODUCTS}/count", {"GET", "HEAD", "OPTIONS"}),
    ],
)
def test_405_names_the_allowed_methods(client: FlaskClient, method: str, path: str, allowed: set[str]) -> None:
    response = client.open(path, method=method)
    assert response.status_code == 405 and response.get_json()["code"] == 405
    assert {m.strip() for m in response.headers["Allow"].split(",")} == allowed  # was missing


def test_options_on_count_advertises_its_own_methods_only(client: FlaskClient) -> None:
    response = client.options(f"{PRODUCTS}/count")
    assert {m.strip() for m in response.headers["Allow"].split(",")} == {"GET", "HEAD", "OPTIONS"}
