"""GET endpoints: filters, sorting, pagination, count, one product, conditional GETs and X-Cache."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_smorest.pagination import PaginationMixin

from tests.support.api import PRODUCTS, assert_json_error, cache_keys
from tests.support.factories import product_payload
from tests.support.fake_cache import FakeCacheBackend
from tests.unit.conftest import CreateProduct

pytestmark = pytest.mark.usefixtures("no_unexpected_errors")


@pytest.fixture
def catalog(create_product: CreateProduct) -> dict[str, dict[str, Any]]:
    """Four products that each filter tells apart, keyed by a short label."""
    return {
        "red": create_product(
            name="Red Mug", category="kitchen", tags=["mug", "red"], price="5.00", stock=0, is_active=True
        ),
        "blue": create_product(name="Blue mug (large)", category="kitchen", tags=["mug"], price="12.50", stock=3),
        "chair": create_product(
            name="Chair", category="furniture", tags=["wood"], price="99.99", stock=10, is_active=False
        ),
        "odd": create_product(name="a.b*c+ [x]", category="misc", tags=[], price="0", stock=1),
    }


def _labels(catalog: dict[str, dict[str, Any]], items: list[dict[str, Any]]) -> list[str]:
    by_id = {body["id"]: label for label, body in catalog.items()}
    return [by_id[item["id"]] for item in items]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", {"red", "blue", "chair", "odd"}),
        ("category=kitchen", {"red", "blue"}),
        ("category=Kitchen", set()),  # exact match, not a search
        ("tag=mug", {"red", "blue"}),
        ("tag=wood&category=kitchen", set()),
        ("min_price=12.50", {"blue", "chair"}),  # bounds are inclusive
        ("max_price=12.5", {"red", "blue", "odd"}),
        ("min_price=5&max_price=12.50", {"red", "blue"}),
        ("min_price=0&max_price=0", {"odd"}),
        ("min_price=12.51&max_price=12.50", set()),  # an empty range matches nothing (not a 422)
        ("in_stock=true", {"blue", "chair", "odd"}),
        ("in_stock=false", {"red"}),
        ("is_active=false", {"chair"}),
        ("is_active=true", {"red", "blue", "odd"}),
        ("q=MUG", {"red", "blue"}),  # case-insensitive substring
        ("q=ue+mu", {"blue"}),
        ("q=.", {"odd"}),  # regex metacharacters are literal text
        ("q=.*", set()),
        ("q=b*c%2B", {"odd"}),
        ("q=[x]", {"odd"}),
        ("q=(", {"blue"}),
        ("q=^Red", set()),
        ("q=Mug$", set()),
        ("q=%5C", set()),  # a lone backslash
        ("category=kitchen&tag=red", {"red"}),
        ("category=kitchen&in_stock=true&q=mug", {"blue"}),
    ],
)
def test_filters_select_the_same_products_in_list_and_count(
    api: FlaskClient, catalog: dict[str, dict[str, Any]], query: str, expected: set[str]
) -> None:
    listed = api.get(f"{PRODUCTS}?{query}")
    assert listed.status_code == 200, listed.get_json()
    assert set(_labels(catalog, listed.get_json())) == expected
    counted = api.get(f"{PRODUCTS}/count?{query}")
    assert counted.status_code == 200, counted.get_json()
    assert counted.get_json() == {"count": len(expected)}


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("price", ["odd", "red", "blue", "chair"]),
        ("-price", ["chair", "blue", "red", "odd"]),
        ("name", ["blue", "chair", "red", "odd"]),  # binary order: capitals first
        ("-name", ["odd", "red", "chair", "blue"]),
        ("stock", ["red", "odd", "blue", "chair"]),
        ("-stock", ["chair", "blue", "odd", "red"]),
        ("created_at", ["red", "blue", "chair", "odd"]),
        ("-created_at", ["odd", "chair", "blue", "red"]),
        ("updated_at", ["red", "blue", "chair", "odd"]),
        ("-updated_at", ["odd", "chair", "blue", "red"]),
    ],
)
def test_sort_orders(api: FlaskClient, catalog: dict[str, dict[str, Any]], sort: str, expected: list[str]) -> None:
    response = api.get(f"{PRODUCTS}?sort={sort}")
    assert response.status_code == 200
    assert _labels(catalog, response.get_json()) == expected


def test_default_sort_is_newest_first(api: FlaskClient, catalog: dict[str, dict[str, Any]]) -> None:
    assert _labels(catalog, api.get(PRODUCTS).get_json()) == ["odd", "chair", "blue", "red"]


def _pagination(response: Any) -> dict[str, int]:
    info: dict[str, int] = json.loads(response.headers["X-Pagination"])
    return info


def test_pages_cover_every_product_once_with_flask_smorest_headers(
    api: FlaskClient, create_product: CreateProduct
) -> None:
    ids = {create_product(price=f"{n}.00")["id"] for n in range(5)}
    seen: list[str] = []
    for page in (1, 2, 3):
        response = api.get(f"{PRODUCTS}?sort=price&page={page}&page_size=2")
        assert response.status_code == 200
        seen += [item["id"] for item in response.get_json()]
        assert _pagination(response) == PaginationMixin._make_pagination_metadata(page, 2, 5)
    assert len(seen) == 5 and set(seen) == ids
    assert _pagination(api.get(f"{PRODUCTS}?page=2&page_size=2")) == {
        "total": 5,
        "total_pages": 3,
        "first_page": 1,
        "last_page": 3,
        "page": 2,
        "previous_page": 1,
        "next_page": 3,
    }


def test_page_beyond_the_last_is_empty(api: FlaskClient, create_product: CreateProduct) -> None:
    create_product()
    response = api.get(f"{PRODUCTS}?page=7&page_size=10")
    assert response.status_code == 200 and response.get_json() == []
    assert _pagination(response) == {"total": 1, "total_pages": 1, "first_page": 1, "last_page": 1}


def test_empty_catalog(api: FlaskClient) -> None:
    response = api.get(PRODUCTS)
    assert response.status_code == 200 and response.get_json() == []
    assert _pagination(response) == {"total": 0, "total_pages": 0}
    assert api.get(f"{PRODUCTS}/count").get_json() == {"count": 0}


def test_default_page_size_is_20(api: FlaskClient, create_product: CreateProduct) -> None:
    for _ in range(21):
        create_product()
    response = api.get(PRODUCTS)
    assert len(response.get_json()) == 20
    assert _pagination(response)["total"] == 21


def test_page_and_page_size_caps_come_from_settings(make_api_app: Callable[..., Flask]) -> None:
    client = make_api_app(max_page_size=3, max_page=2).test_client()
    assert client.get(f"{PRODUCTS}?page_size=3&page=2").status_code == 200
    assert_json_error(client.get(f"{PRODUCTS}?page_size=4"), 422, "page_size", "must be at most 3")
    assert_json_error(client.get(f"{PRODUCTS}?page=3"), 422, "page", "must be at most 2")


def test_default_page_size_is_cut_to_a_smaller_cap(make_api_app: Callable[..., Flask], auth: dict[str, str]) -> None:
    client = make_api_app(max_page_size=5).test_client()
    for _ in range(6):
        assert client.post(PRODUCTS, json=product_payload(), headers=auth).status_code == 201
    response = client.get(PRODUCTS)  # used to be a 422: the default of 20 was above the cap
    assert response.status_code == 200 and len(response.get_json()) == 5
    assert _pagination(response)["total_pages"] == 2
    page_size = _parameter(client, "/api/v1/products", "get", "page_size")
    assert page_size["schema"]["maximum"] == 5 and page_size["schema"]["default"] == 5


def _parameter(client: FlaskClient, path: str, method: str, name: str) -> dict[str, Any]:
    """One parameter of one operation, as the app's OpenAPI document describes it."""
    operation = client.get("/api/openapi.json").get_json()["paths"][path][method]
    parameter: dict[str, Any] = next(p for p in operation["parameters"] if p["name"] == name)
    return parameter


def test_count_refuses_list_only_parameters(api: FlaskClient) -> None:
    for param in ("sort=price", "page=1", "page_size=5"):
        name = param.split("=")[0]
        assert_json_error(api.get(f"{PRODUCTS}/count?{param}"), 422, name, "Unknown field")


def test_get_one_returns_what_was_created(api: FlaskClient, create_product: CreateProduct) -> None:
    created = create_product(price="7.10", tags=["a", "b"])
    response = api.get(f"{PRODUCTS}/{created['id']}")
    assert response.status_code == 200
    assert response.get_json() == created
    assert response.headers["ETag"] == '"v1"'


@pytest.mark.parametrize(
    "product_id",
    [
        "0123456789abcdef01234567",  # well-formed, unknown
        "abc",
        "0123456789ABCDEF01234567",  # upper-case hex is not the canonical form
        "0123456789abcdef012345678",  # 25 characters
        "0123456789abcdef0123456",  # 23 characters
        "$where",
        "%24ne",
        "null",
        "%00",
        "x" * 5000,
    ],
)
def test_unknown_or_malformed_id_is_a_json_404(
    api: FlaskClient, create_product: CreateProduct, product_id: str
) -> None:
    create_product()
    assert_json_error(api.get(f"{PRODUCTS}/{product_id}"), 404, "product not found")


@pytest.mark.parametrize(
    ("if_none_match", "status"),
    [
        ('"v1"', 304),
        ('W/"v1"', 304),  # weak comparison for GET
        ("*", 304),
        ('"v7", "v1"', 304),
        ('"v2"', 200),
        ('"v01"', 200),
        ('"1"', 200),
        ("garbage", 200),
        ("", 200),
    ],
)
def test_if_none_match(api: FlaskClient, create_product: CreateProduct, if_none_match: str, status: int) -> None:
    product_id = create_product()["id"]
    response = api.get(f"{PRODUCTS}/{product_id}", headers={"If-None-Match": if_none_match})
    assert response.status_code == status
    assert response.headers["ETag"] == '"v1"'
    if status == 304:
        assert response.get_data() == b""
    else:
        assert response.get_json()["id"] == product_id


def test_if_none_match_with_an_old_version_gets_the_new_one(
    api: FlaskClient, auth: dict[str, str], create_product: CreateProduct
) -> None:
    product_id = create_product()["id"]
    assert api.patch(f"{PRODUCTS}/{product_id}", json={"stock": 1}, headers=auth).status_code == 200
    response = api.get(f"{PRODUCTS}/{product_id}", headers={"If-None-Match": '"v1"'})
    assert response.status_code == 200 and response.headers["ETag"] == '"v2"'
    assert response.get_json()["stock"] == 1


def test_reads_need_no_token(api: FlaskClient, create_product: CreateProduct) -> None:
    product_id = create_product()["id"]
    for path in (PRODUCTS, f"{PRODUCTS}/count", f"{PRODUCTS}/{product_id}", "/api/v1/categories"):
        assert api.get(path).status_code == 200, path


def test_categories_count_products(api: FlaskClient, catalog: dict[str, dict[str, Any]]) -> None:
    response = api.get("/api/v1/categories")
    assert response.status_code == 200
    assert response.get_json() == [
        {"category": "furniture", "count": 1},
        {"category": "kitchen", "count": 2},
        {"category": "misc", "count": 1},
    ]


def test_x_cache_reports_how_each_read_was_served(
    api: FlaskClient, auth: dict[str, str], create_product: CreateProduct, cached: bool
) -> None:
    product_id = create_product()["id"]

    def sources(path: str, times: int = 2, **kwargs: Any) -> list[str]:
        return [api.get(path, **kwargs).headers["X-Cache"] for _ in range(times)]

    one = f"{PRODUCTS}/{product_id}"
    if not cached:
        for path in (one, PRODUCTS, f"{PRODUCTS}/count"):
            assert sources(path) == ["BYPASS", "BYPASS"], path
        assert sources(one, 1, headers={"If-None-Match": '"v1"'}) == ["BYPASS"]
        return
    assert sources(one) == ["HIT", "HIT"]  # written through by the POST
    assert sources(one, 1, headers={"If-None-Match": '"v1"'}) == ["HIT"]
    assert sources(PRODUCTS) == ["MISS", "HIT"]
    assert sources(f"{PRODUCTS}?category=testing") == ["MISS", "HIT"]  # each query has its own entry
    assert sources(f"{PRODUCTS}/count") == ["MISS", "HIT"]
    # A write that changes no field a query filters or sorts on leaves it cached: a page's
    # items are read from the product entries, which the write updated itself.
    assert api.patch(one, json={"stock": 2}, headers=auth).status_code == 200
    assert sources(PRODUCTS) == ["HIT", "HIT"]
    assert sources(f"{PRODUCTS}/count") == ["HIT", "HIT"]
    assert api.get(PRODUCTS).get_json()[0]["stock"] == 2
    # One that moves the product out of a filter recomputes that filter's results once.
    assert sources(f"{PRODUCTS}/count?category=testing") == ["MISS", "HIT"]
    assert api.patch(one, json={"category": "other"}, headers=auth).status_code == 200
    assert sources(f"{PRODUCTS}?category=testing") == ["MISS", "HIT"]
    assert sources(f"{PRODUCTS}/count?category=testing") == ["MISS", "HIT"]
    assert api.get(f"{PRODUCTS}/count?category=testing").get_json() == {"count": 0}
    assert sources(PRODUCTS) == ["HIT", "HIT"] and sources(f"{PRODUCTS}/count") == ["HIT", "HIT"]


def test_evicted_product_is_filled_on_the_next_read(
    api_app: Flask, api: FlaskClient, fake_cache: FakeCacheBackend, create_product: CreateProduct, cached: bool
) -> None:
    created = create_product()
    fake_cache.delete(cache_keys(api_app).product(created["id"]).entry)
    first, second = (api.get(f"{PRODUCTS}/{created['id']}") for _ in range(2))
    assert first.get_json() == second.get_json() == created
    expected = ["MISS", "HIT"] if cached else ["BYPASS", "BYPASS"]
    assert [first.headers["X-Cache"], second.headers["X-Cache"]] == expected


def test_unknown_products_are_cached_as_absent(
    api_app: Flask, api: FlaskClient, fake_cache: FakeCacheBackend, cached: bool
) -> None:
    unknown = "0123456789abcdef01234567"
    for _ in range(2):
        assert_json_error(api.get(f"{PRODUCTS}/{unknown}"), 404, "product not found")
    entry = fake_cache.get_versioned(cache_keys(api_app).product(unknown).entry)
    # Cached as absent (version 0, no body) when the cache is on: the next reads ask no database.
    assert (entry is not None and entry.version == 0 and entry.is_tombstone) if cached else entry is None
