"""Error bodies: the catch-all 500, messages on every HTTP error, and the validation summary."""

from __future__ import annotations

import logging

import pytest
from flask import Flask
from flask.testing import FlaskClient

from jollyjet.api import describe_errors
from jollyjet.extensions import services_of
from tests.support.api import PRODUCTS, assert_json_error
from tests.support.factories import product_payload
from tests.unit.conftest import CreateProduct

_SECRET = "mongodb://admin:hunter2@db"


def _explode(*_: object, **__: object) -> None:
    raise RuntimeError(f"cannot reach {_SECRET}")


@pytest.mark.parametrize("operation", ["get_body", "list_bodies", "count", "create", "update", "categories"])
def test_unexpected_exception_is_a_logged_json_500_without_details(
    api_app: Flask,
    api: FlaskClient,
    auth: dict[str, str],
    create_product: CreateProduct,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    operation: str,
) -> None:
    product_id = create_product()["id"]
    monkeypatch.setattr(services_of(api_app).products, operation, _explode)
    request = {
        "get_body": lambda: api.get(f"{PRODUCTS}/{product_id}"),
        "list_bodies": lambda: api.get(PRODUCTS),
        "count": lambda: api.get(f"{PRODUCTS}/count"),
        "create": lambda: api.post(PRODUCTS, json=product_payload(), headers=auth),
        "update": lambda: api.patch(f"{PRODUCTS}/{product_id}", json={"stock": 1}, headers=auth),
        "categories": lambda: api.get("/api/v1/categories"),
    }[operation]
    with caplog.at_level(logging.ERROR, logger="jollyjet.http"):
        response = request()
    body = assert_json_error(response, 500)
    assert body == {"code": 500, "status": "Internal Server Error", "message": "internal error; it has been logged"}
    assert b"hunter2" not in response.get_data() and b"Traceback" not in response.get_data()
    logged = [r for r in caplog.records if r.name == "jollyjet.http" and r.exc_info]
    assert len(logged) == 1 and _SECRET in str(logged[0].exc_info[1])  # type: ignore[index]


@pytest.mark.parametrize(
    ("method", "path", "status", "fragment"),
    [
        ("GET", "/no/such/page", 404, "not found"),
        ("GET", f"{PRODUCTS}/a/b", 404, "not found"),
        ("DELETE", PRODUCTS, 405, "not allowed"),
        ("POST", f"{PRODUCTS}/count", 405, "not allowed"),
    ],
)
def test_http_errors_carry_a_message(api: FlaskClient, method: str, path: str, status: int, fragment: str) -> None:
    body = assert_json_error(api.open(path, method=method), status)
    assert fragment in body["message"]


def test_describe_errors_flattens_marshmallow_errors() -> None:
    errors = {"json": {"_schema": ["Invalid input type."], "tags": {1: ["Not a valid string."]}}}
    assert describe_errors(errors) == "json: Invalid input type.; json.tags.1: Not a valid string."


def test_describe_errors_lists_the_first_five_problems() -> None:
    errors = {"query": {f"p{n}": ["Unknown field."] for n in range(8)}}
    message = describe_errors(errors)
    assert message.count("Unknown field.") == 5 and message.endswith("; and 3 more")


def test_describe_errors_bounds_the_length() -> None:
    message = describe_errors({"json": {"x" * 5000: ["Unknown field."]}})
    assert len(message) == 500 and message.endswith("...")
