"""ProductHits: a found product's GET is answered before Flask; the rest reaches Flask with the read already made."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from jollyjet.extensions import services_of
from jollyjet.products.repository import DatabaseUnavailable
from tests.support.api import PRODUCTS
from tests.unit.conftest import CreateProduct

VIEW = "products.ProductRead"
UNKNOWN_ID = "6b16679e2a00e25b96697180"


def _view_must_not_run(*_: Any, **__: Any) -> Any:
    raise AssertionError("Flask's view ran for a product the middleware had found")


def _counted_reads(app: Flask) -> list[str]:
    """Every get_body call of the app's catalog, by product id."""
    products = services_of(app).products
    original, calls = products.get_body, []

    def counted(product_id: str) -> Any:
        calls.append(product_id)
        return original(product_id)

    products.get_body = counted  # type: ignore[method-assign]
    return calls


def test_a_found_product_is_answered_without_flask_with_every_header_metric_and_log_line(
    api_app: Flask, create_product: CreateProduct, cached: bool, caplog: pytest.LogCaptureFixture
) -> None:
    product = create_product()
    api_app.view_functions[VIEW] = _view_must_not_run
    client = api_app.test_client()
    with caplog.at_level(logging.INFO, logger="jollyjet.access"):
        first = client.get(f"{PRODUCTS}/{product['id']}")
        second = client.get(f"{PRODUCTS}/{product['id']}", headers={"X-Request-ID": "client-chosen-id-1"})
    assert first.status_code == second.status_code == 200
    assert second.get_json() == product
    assert second.headers["ETag"] == f'"v{product["version"]}"'
    assert second.headers["X-Cache"] == ("HIT" if cached else "BYPASS")
    assert second.headers["Cache-Control"] == "public, no-cache"
    assert second.headers["Content-Type"] == "application/json"
    assert second.headers["X-Content-Type-Options"] == "nosniff"  # SecurityHeaders wraps the middleware
    assert second.headers["X-Request-ID"] == "client-chosen-id-1"
    lines = [r for r in caplog.records if r.name == "jollyjet.access"]
    assert len(lines) == 2  # one access line per request
    assert lines[1].__dict__["route"] == "/api/v1/products/<product_id:product_id>"
    assert (lines[1].__dict__["status"], lines[1].__dict__["path"]) == (200, f"{PRODUCTS}/{product['id']}")
    assert lines[0].__dict__["request_id"] == first.headers["X-Request-ID"]
    assert lines[1].__dict__["request_id"] == "client-chosen-id-1"


def test_a_matching_if_none_match_is_a_304_without_a_body(api_app: Flask, create_product: CreateProduct) -> None:
    product = create_product()
    api_app.view_functions[VIEW] = _view_must_not_run
    client = api_app.test_client()
    tag = client.get(f"{PRODUCTS}/{product['id']}").headers["ETag"]
    for header in (tag, f"W/{tag}", f'"other", {tag}', "*"):
        response = client.get(f"{PRODUCTS}/{product['id']}", headers={"If-None-Match": header})
        assert (response.status_code, response.data, response.headers["ETag"]) == (304, b"", tag), header
    assert client.get(f"{PRODUCTS}/{product['id']}", headers={"If-None-Match": '"v999"'}).status_code == 200


def test_an_unknown_id_is_read_once_and_answered_by_flask(api_app: Flask) -> None:
    reads = _counted_reads(api_app)
    response = api_app.test_client().get(f"{PRODUCTS}/{UNKNOWN_ID}", headers={"X-Request-ID": "client-chosen-id-2"})
    assert response.status_code == 404
    assert response.get_json()["message"] == "product not found"
    assert response.headers["X-Request-ID"] == "client-chosen-id-2"  # the middleware's id, kept by Flask's hook
    assert reads == [UNKNOWN_ID]


def test_an_error_is_read_once_and_answered_by_flasks_error_handlers(api_app: Flask) -> None:
    products = services_of(api_app).products
    calls: list[str] = []

    def down(product_id: str) -> Any:
        calls.append(product_id)
        raise DatabaseUnavailable("MongoDB is down")

    products.get_body = down  # type: ignore[method-assign]
    response = api_app.test_client().get(f"{PRODUCTS}/{UNKNOWN_ID}")
    assert response.status_code == 503
    assert "Retry-After" in response.headers
    assert response.headers["Cache-Control"] == "no-store"
    assert calls == [UNKNOWN_ID]


@pytest.mark.parametrize("method", ["HEAD", "OPTIONS"])
def test_other_methods_go_to_flask(api_app: Flask, create_product: CreateProduct, method: str) -> None:
    product = create_product()
    reads = _counted_reads(api_app)
    response = api_app.test_client().open(f"{PRODUCTS}/{product['id']}", method=method)
    assert response.status_code == 200
    assert reads == ([product["id"]] if method == "HEAD" else [])


def test_a_cors_request_goes_to_flask_which_adds_the_cors_headers(
    make_api_app: Callable[..., Flask], auth: dict[str, str]
) -> None:
    shop = "https://shop.example"
    app = make_api_app(cors_origins_raw=shop)
    client = app.test_client()
    product = client.post(PRODUCTS, json={"name": "A", "sku": "CORS-1", "price": "1.00", "category": "x"}, headers=auth)
    assert product.status_code == 201
    path = f"{PRODUCTS}/{product.get_json()['id']}"
    reads = _counted_reads(app)
    response = client.get(path, headers={"Origin": shop})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == shop
    assert reads == [product.get_json()["id"]]
    assert "Access-Control-Allow-Origin" not in client.get(path).headers  # no Origin: answered by the middleware
