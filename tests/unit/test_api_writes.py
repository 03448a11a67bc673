"""POST, PUT, PATCH and DELETE: status codes, headers, tokens, duplicate skus and If-Match."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from jollyjet.extensions import services_of
from tests.conftest import TOKEN
from tests.support.api import PRODUCTS, assert_json_error, product_count, store_state
from tests.support.factories import product_payload
from tests.support.fake_cache import FakeCacheBackend
from tests.unit.conftest import CreateProduct

pytestmark = pytest.mark.usefixtures("no_unexpected_errors")


def test_post_creates_at_version_1(api: FlaskClient, auth: dict[str, str]) -> None:
    payload = product_payload(price=12.5, tags=["b", "a", "b"])
    response = api.post(PRODUCTS, json=payload, headers=auth)
    assert response.status_code == 201
    body = response.get_json()
    assert response.headers["ETag"] == '"v1"'
    assert response.headers["Location"].endswith(f"{PRODUCTS}/{body['id']}")
    expected = {**payload, "price": "12.50", "tags": ["b", "a"], "version": 1}  # tags de-duplicated, in order
    assert {k: body[k] for k in expected} == expected
    assert body["created_at"] == body["updated_at"] and body["created_at"].endswith("Z")
    assert api.get(response.headers["Location"]).get_json() == body


def test_post_fills_in_defaults(api: FlaskClient, auth: dict[str, str]) -> None:
    payload = {"sku": "MIN-1", "name": "Minimal", "price": "1", "category": "basics"}
    body = api.post(PRODUCTS, json=payload, headers=auth).get_json()
    assert body["price"] == "1.00"
    assert {k: body[k] for k in ("description", "currency", "tags", "stock", "is_active")} == {
        "description": "",
        "currency": "USD",
        "tags": [],
        "stock": 0,
        "is_active": True,
    }


@pytest.mark.parametrize(
    ("price", "shown"), [("0", "0.00"), (0, "0.00"), ("0.5", "0.50"), (1e2, "100.00"), ("999999999.99", "999999999.99")]
)
def test_prices_are_exact(api: FlaskClient, auth: dict[str, str], price: Any, shown: str) -> None:
    response = api.post(PRODUCTS, json=product_payload(price=price), headers=auth)
    assert response.status_code == 201 and response.get_json()["price"] == shown


def test_put_replaces_every_field(api: FlaskClient, auth: dict[str, str], create_product: CreateProduct) -> None:
    created = create_product(description="old", tags=["x"], stock=4)
    replacement = {"sku": "NEW-SKU", "name": "New", "price": "3.30", "category": "other"}
    response = api.put(f"{PRODUCTS}/{created['id']}", json=replacement, headers=auth)
    assert response.status_code == 200 and response.headers["ETag"] == '"v2"'
    body = response.get_json()
    assert body["version"] == 2 and body["id"] == created["id"] and body["created_at"] == created["created_at"]
    # Omitted fields go back to their defaults: PUT is a replacement.
    assert {k: body[k] for k in ("sku", "name", "price", "category", "description", "tags", "stock")} == {
        **replacement,
        "description": "",
        "tags": [],
        "stock": 0,
    }
    assert api.get(f"{PRODUCTS}/{created['id']}").get_json() == body


def test_patch_changes_only_what_it_names(
    api: FlaskClient, auth: dict[str, str], create_product: CreateProduct
) -> None:
    created = create_product()
    response = api.patch(f"{PRODUCTS}/{created['id']}", json={"stock": 0, "is_active": False}, headers=auth)
    assert response.status_code == 200 and response.headers["ETag"] == '"v2"'
    body = response.get_json()
    unchanged = {k: v for k, v in created.items() if k not in ("stock", "is_active", "version", "updated_at")}
    assert {k: body[k] for k in unchanged} == unchanged
    assert (body["stock"], body["is_active"], body["version"]) == (0, False, 2)
    assert body["updated_at"] >= created["updated_at"]


def test_delete(api: FlaskClient, auth: dict[str, str], create_product: CreateProduct) -> None:
    product_id = create_product()["id"]
    api.get(PRODUCTS)  # a cached list must not keep showing the deleted product
    response = api.delete(f"{PRODUCTS}/{product_id}", headers=auth)
    assert response.status_code == 204 and response.get_data() == b""
    assert_json_error(api.get(f"{PRODUCTS}/{product_id}"), 404, "product not found")
    assert api.get(PRODUCTS).get_json() == []
    assert api.get(f"{PRODUCTS}/count").get_json() == {"count": 0}
    assert_json_error(api.delete(f"{PRODUCTS}/{product_id}", headers=auth), 404, "product not found")


def test_writes_are_visible_to_the_next_read(
    api: FlaskClient, auth: dict[str, str], create_product: CreateProduct, cached: bool
) -> None:
    product_id = create_product()["id"]
    path = f"{PRODUCTS}/{product_id}"
    for warm in (path, PRODUCTS, f"{PRODUCTS}/count"):  # fill every kind of cache entry first
        assert api.get(warm).status_code == 200
    create_product()
    assert api.patch(path, json={"name": "Renamed"}, headers=auth).status_code == 200
    read = api.get(path)
    assert read.get_json()["name"] == "Renamed" and read.headers["ETag"] == '"v2"'
    assert read.headers["X-Cache"] == ("HIT" if cached else "BYPASS")  # written through, not refilled
    assert "Renamed" in [item["name"] for item in api.get(PRODUCTS).get_json()]
    assert api.get(f"{PRODUCTS}/count").get_json() == {"count": 2}


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
@pytest.mark.parametrize("product_id", ["0123456789abcdef01234567", "abc", "0123456789ABCDEF01234567", "$where"])
def test_writes_to_unknown_or_malformed_ids_are_404(
    api_app: Flask,
    api: FlaskClient,
    auth: dict[str, str],
    fake_cache: FakeCacheBackend,
    create_product: CreateProduct,
    method: str,
    product_id: str,
) -> None:
    create_product()
    before = store_state(api_app, fake_cache)
    body = {"put": product_payload(), "patch": {"stock": 1}, "delete": None}[method]
    response = api.open(f"{PRODUCTS}/{product_id}", method=method.upper(), json=body, headers=auth)
    assert_json_error(response, 404, "product not found")
    assert store_state(api_app, fake_cache) == before


# --- authentication ----------------------------------------------------------------------------

_BAD_AUTHORIZATION = [
    None,
    "",
    "Bearer",
    "Bearer ",
    "Bearer wrong-token",
    f"Bearer {TOKEN}x",
    f"Bearer {TOKEN[:-1]}",
    f"Basic {TOKEN}",
    f"Token {TOKEN}",
    TOKEN,
    f"Bearer{TOKEN}",
]


@pytest.mark.parametrize("authorization", _BAD_AUTHORIZATION)
@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_writes_need_a_valid_bearer_token(
    api_app: Flask,
    api: FlaskClient,
    fake_cache: FakeCacheBackend,
    create_product: CreateProduct,
    method: str,
    authorization: str | None,
) -> None:
    product_id = create_product()["id"]
    before = store_state(api_app, fake_cache)
    path = PRODUCTS if method == "post" else f"{PRODUCTS}/{product_id}"
    headers = {} if authorization is None else {"Authorization": authorization}
    body = {"stock": 1} if method == "patch" else product_payload()
    response = api.open(path, method=method.upper(), json=body, headers=headers)
    assert_json_error(response, 401, "Authorization: Bearer")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert store_state(api_app, fake_cache) == before


def test_authentication_comes_before_body_parsing(api: FlaskClient) -> None:
    response = api.post(PRODUCTS, data=b"{not json", content_type="application/json")
    assert_json_error(response, 401)


def test_scheme_is_case_insensitive(api: FlaskClient) -> None:
    response = api.post(PRODUCTS, json=product_payload(), headers={"Authorization": f"bearer {TOKEN}"})
    assert response.status_code == 201


def test_any_configured_token_is_accepted(make_api_app: Callable[..., Flask]) -> None:
    client = make_api_app(api_tokens_raw="first-token-000000, second-token-00000").test_client()
    for token in ("first-token-000000", "second-token-00000"):
        response = client.post(PRODUCTS, json=product_payload(), headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 201
    denied = client.post(PRODUCTS, json=product_payload(), headers={"Authorization": f"Bearer {TOKEN}"})
    assert_json_error(denied, 401)


# --- duplicate skus ----------------------------------------------------------------------------


def test_duplicate_sku(
    api_app: Flask,
    api: FlaskClient,
    auth: dict[str, str],
    fake_cache: FakeCacheBackend,
    create_product: CreateProduct,
) -> None:
    first = create_product(sku="TAKEN-1")
    second = create_product(sku="FREE-2")
    before = store_state(api_app, fake_cache)
    attempts = [
        api.post(PRODUCTS, json=product_payload(sku="TAKEN-1"), headers=auth),
        api.put(f"{PRODUCTS}/{second['id']}", json=product_payload(sku="TAKEN-1"), headers=auth),
        api.patch(f"{PRODUCTS}/{second['id']}", json={"sku": "TAKEN-1"}, headers=auth),
    ]
    for response in attempts:
        assert_json_error(response, 409, "sku")
    assert store_state(api_app, fake_cache) == before
    assert product_count(api_app) == 2
    # Keeping one's own sku is not a duplicate.
    assert api.patch(f"{PRODUCTS}/{first['id']}", json={"sku": "TAKEN-1"}, headers=auth).status_code == 200
    assert api.put(f"{PRODUCTS}/{first['id']}", json=product_payload(sku="TAKEN-1"), headers=auth).status_code == 200


def test_sku_is_case_sensitive(api: FlaskClient, create_product: CreateProduct) -> None:
    create_product(sku="abc-1")
    create_product(sku="ABC-1")
    assert api.get(f"{PRODUCTS}/count").get_json() == {"count": 2}


# --- If-Match ----------------------------------------------------------------------------------


def _write(api: FlaskClient, method: str, product_id: str, headers: dict[str, str]) -> Any:
    body = {"put": product_payload(), "patch": {"stock": 42}, "delete": None}[method]
    return api.open(f"{PRODUCTS}/{product_id}", method=method.upper(), json=body, headers=headers)


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
@pytest.mark.parametrize("if_match", ['"v1"', 'W/"v2"', '"v3"', '"v2x"', "garbage", '"v1", "v3"'])
def test_stale_if_match_is_412_with_the_current_etag(
    api_app: Flask,
    api: FlaskClient,
    auth: dict[str, str],
    fake_cache: FakeCacheBackend,
    create_product: CreateProduct,
    method: str,
    if_match: str,
) -> None:
    product_id = create_product()["id"]
    assert api.patch(f"{PRODUCTS}/{product_id}", json={"stock": 1}, headers=auth).status_code == 200  # now v2
    before = store_state(api_app, fake_cache)
    response = _write(api, method, product_id, {**auth, "If-Match": if_match})
    assert_json_error(response, 412, "If-Match", "2")
    assert response.headers["ETag"] == '"v2"'  # strong comparison: W/"v2" does not match
    assert store_state(api_app, fake_cache) == before


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
@pytest.mark.parametrize("if_match", ['"v2"', "*", '"v9", "v2"', None])
def test_current_or_star_if_match_succeeds(
    api: FlaskClient, auth: dict[str, str], create_product: CreateProduct, method: str, if_match: str | None
) -> None:
    product_id = create_product()["id"]
    assert api.patch(f"{PRODUCTS}/{product_id}", json={"stock": 1}, headers=auth).status_code == 200  # now v2
    headers = auth if if_match is None else {**auth, "If-Match": if_match}
    response = _write(api, method, product_id, headers)
    if method == "delete":
        assert response.status_code == 204
        assert api.get(f"{PRODUCTS}/{product_id}").status_code == 404
    else:
        assert response.status_code == 200 and response.headers["ETag"] == '"v3"'
        assert api.get(f"{PRODUCTS}/{product_id}").get_json()["version"] == 3


def test_if_match_is_judged_by_the_database_not_a_stale_cache_entry(
    api_app: Flask, api: FlaskClient, auth: dict[str, str], create_product: CreateProduct
) -> None:
    product_id = create_product()["id"]
    # An update the cache never saw (as after a failed write-through): MongoDB is at v2, any cached copy at v1.
    services_of(api_app).mongo.update(product_id, {"stock": 7}, None)
    stale = api.patch(f"{PRODUCTS}/{product_id}", json={"stock": 8}, headers={**auth, "If-Match": '"v1", "v9"'})
    assert_json_error(stale, 412)
    assert stale.headers["ETag"] == '"v2"'
    current = api.patch(f"{PRODUCTS}/{product_id}", json={"stock": 8}, headers={**auth, "If-Match": '"v2", "v9"'})
    assert current.status_code == 200 and current.get_json()["version"] == 3
