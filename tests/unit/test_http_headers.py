"""Security headers on every response, no-store on writes and admin, CORS only for listed origins."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from jollyjet.settings import SettingsError
from tests.conftest import make_app, make_settings
from tests.support.api import PRODUCTS
from tests.support.factories import product_payload
from tests.support.fake_cache import FakeCacheBackend

SHOP = "https://shop.example.com"


def _assert_security_headers(response: TestResponse) -> None:
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Content-Security-Policy"] == "frame-ancestors 'none'"
    assert response.headers["Referrer-Policy"] == "no-referrer"


def _every_kind_of_response(client: FlaskClient, auth: dict[str, str]) -> dict[str, TestResponse]:
    created = client.post(PRODUCTS, json=product_payload(), headers=auth)
    product = f"{PRODUCTS}/{created.get_json()['id']}"
    return {
        "list": client.get(PRODUCTS),
        "one": client.get(product),
        "created": created,
        "patched": client.patch(product, json={"stock": 1}, headers=auth),
        "not-found": client.get(f"{PRODUCTS}/nope"),
        "not-allowed": client.open(PRODUCTS, method="TRACE"),
        "unauthorized": client.post(PRODUCTS, json={}),
        "invalid": client.post(PRODUCTS, json={"sku": ""}, headers=auth),
        "too-large": client.post(PRODUCTS, data=b"x" * 70_000, content_type="application/json", headers=auth),
        "document": client.get("/api/openapi.json"),
        "health": client.get("/health/live"),
        "admin": client.get("/api/v1/tasks/6b0737ec-95a6-4978-a677-2a3400000000", headers=auth),
        "deleted": client.delete(product, headers=auth),
    }


def test_every_response_carries_the_security_headers(client: FlaskClient, auth: dict[str, str]) -> None:
    for name, response in _every_kind_of_response(client, auth).items():
        assert response.status_code < 500, name
        _assert_security_headers(response)


def test_writes_and_admin_responses_are_not_stored(client: FlaskClient, auth: dict[str, str]) -> None:
    responses = _every_kind_of_response(client, auth)
    for name in ("created", "patched", "unauthorized", "invalid", "too-large", "admin", "deleted"):
        assert responses[name].headers["Cache-Control"] == "no-store", name
    for name in ("list", "one", "document", "health"):
        assert "no-store" not in responses[name].headers.get("Cache-Control", ""), name


def test_cors_is_off_unless_origins_are_configured(client: FlaskClient) -> None:
    simple = client.get(PRODUCTS, headers={"Origin": SHOP})
    preflight = client.options(PRODUCTS, headers={"Origin": SHOP, "Access-Control-Request-Method": "POST"})
    for response in (simple, preflight):
        assert not [name for name, _ in response.headers.items() if name.startswith("Access-Control-")]


@pytest.fixture
def cors_client(fake_cache: FakeCacheBackend) -> FlaskClient:
    settings = make_settings(cors_origins_raw=f"{SHOP}, http://localhost:3000")
    app: Flask = make_app(settings, cache_backend=fake_cache)
    return app.test_client()


def test_a_listed_origin_may_read_responses_and_their_headers(cors_client: FlaskClient) -> None:
    response = cors_client.get(PRODUCTS, headers={"Origin": "http://localhost:3000"})
    assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert "Origin" in response.headers["Vary"]
    exposed = {h.strip() for h in response.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"ETag", "X-Cache", "X-Pagination", "Location", "Retry-After"} <= exposed
    _assert_security_headers(response)


def test_a_preflight_from_a_listed_origin_names_methods_and_headers(cors_client: FlaskClient) -> None:
    headers = {"Origin": SHOP, "Access-Control-Request-Method": "PATCH"}
    response = cors_client.options(f"{PRODUCTS}/6b0737ec95a6d978e6772a34", headers=headers)
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == SHOP
    methods = {m.strip() for m in response.headers["Access-Control-Allow-Methods"].split(",")}
    assert {"GET", "PUT", "PATCH", "DELETE"} <= methods
    allowed = {h.strip() for h in response.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"Authorization", "Content-Type", "If-Match"} <= allowed


def test_other_origins_get_no_cors_headers(cors_client: FlaskClient) -> None:
    for origin in ("https://evil.example.com", "null", "https://shop.example.com.evil.net"):
        response = cors_client.get(PRODUCTS, headers={"Origin": origin})
        assert response.status_code == 200
        assert "Access-Control-Allow-Origin" not in response.headers, origin
        assert "Origin" in response.headers["Vary"]  # a cache must not reuse it for a listed origin


@pytest.mark.parametrize("value", ["*", "shop.example.com", "https://shop.example.com/", "ftp://x", "https://a b"])
def test_a_malformed_origin_is_refused_at_start(value: Any) -> None:
    with pytest.raises(SettingsError, match="JOLLYJET_CORS_ORIGINS"):
        make_settings(cors_origins_raw=value)
