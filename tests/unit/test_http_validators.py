"""Validators and cache headers on the public reads: ETag and If-None-Match → 304 on every GET kind,
Cache-Control (default and configured, no-store on errors), and the RFC 8288 Link header of list pages.

Every test runs with the cache on (fakeredis) and off (MongoDB alone): a 304 is decided from
the answer the request read, whichever way it was served.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from jollyjet.settings import SettingsError
from tests.conftest import make_settings
from tests.support.api import PRODUCTS
from tests.unit.conftest import CreateProduct

pytestmark = pytest.mark.usefixtures("no_unexpected_errors")
CATEGORIES = "/api/v1/categories"
DEFAULT_CACHE_CONTROL = "public, no-cache"


@pytest.fixture
def shop(create_product: CreateProduct) -> dict[str, dict[str, Any]]:
    """Two kitchen products and one garden product."""
    return {
        "mug": create_product(name="Mug", category="kitchen", price="5.00"),
        "pan": create_product(name="Pan", category="kitchen", price="30.00"),
        "hose": create_product(name="Hose", category="garden", price="12.00"),
    }


def _reads(shop: dict[str, dict[str, Any]]) -> dict[str, str]:
    """One path of each GET kind."""
    return {
        "product": f"{PRODUCTS}/{shop['mug']['id']}",
        "list": f"{PRODUCTS}?category=kitchen&sort=price",
        "count": f"{PRODUCTS}/count?category=kitchen",
        "categories": CATEGORIES,
    }


KINDS = ("product", "list", "count", "categories")


def _assert_not_modified(response: TestResponse, fresh: TestResponse) -> None:
    """A 304 with no body and the validators and cache headers its 200 carries."""
    assert response.status_code == 304
    assert response.get_data() == b""
    for name in ("ETag", "Cache-Control", "X-Pagination", "Link"):
        assert response.headers.get(name) == fresh.headers.get(name), name
    assert response.headers["X-Cache"] in {"HIT", "MISS", "BYPASS"}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "matching",
    [
        lambda tag: tag,
        lambda tag: f"W/{tag}",  # weak comparison for GET (RFC 9110 13.1.2)
        lambda tag: f'"other", {tag}',
        lambda tag: f'W/"other",{tag} , "more"',
        lambda _tag: "*",  # the resource has a current representation
    ],
    ids=["strong", "weak", "list", "list-spacing", "star"],
)
def test_if_none_match_naming_the_current_tag_is_304(
    api: FlaskClient, shop: dict[str, dict[str, Any]], kind: str, matching: Callable[[str], str]
) -> None:
    path = _reads(shop)[kind]
    fresh = api.get(path)
    assert fresh.status_code == 200
    tag = fresh.headers["ETag"]
    assert re.fullmatch(r'"[A-Za-z0-9_-]+"', tag)  # strong, quoted
    _assert_not_modified(api.get(path, headers={"If-None-Match": matching(tag)}), fresh)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("if_none_match", ['"other"', 'W/"other", "x"', "", "garbage", '"'])
def test_if_none_match_naming_another_tag_is_a_full_answer(
    api: FlaskClient, shop: dict[str, dict[str, Any]], kind: str, if_none_match: str
) -> None:
    path = _reads(shop)[kind]
    fresh = api.get(path)
    response = api.get(path, headers={"If-None-Match": if_none_match})
    assert response.status_code == 200
    assert response.get_data() == fresh.get_data() and response.headers["ETag"] == fresh.headers["ETag"]


def test_a_tag_validates_only_its_own_kind_of_answer(api: FlaskClient, shop: dict[str, dict[str, Any]]) -> None:
    tags = {kind: api.get(path).headers["ETag"] for kind, path in _reads(shop).items()}
    assert len(set(tags.values())) == len(tags)
    other_list = f"{PRODUCTS}?category=garden"
    assert api.get(other_list, headers={"If-None-Match": tags["list"]}).status_code == 200


def _tag(api: FlaskClient, path: str) -> str:
    response = api.get(path)
    assert response.status_code == 200
    return response.headers["ETag"]


def _patch(api: FlaskClient, auth: dict[str, str], product: dict[str, Any], **fields: Any) -> None:
    assert api.patch(f"{PRODUCTS}/{product['id']}", json=fields, headers=auth).status_code == 200


def test_a_write_that_changes_an_answer_changes_its_tag(
    api: FlaskClient, auth: dict[str, str], shop: dict[str, dict[str, Any]], create_product: CreateProduct
) -> None:
    paths = _reads(shop)
    before = {kind: _tag(api, path) for kind, path in paths.items()}
    _patch(api, auth, shop["mug"], stock=41)  # the product, and the kitchen page that shows it
    after_patch = {kind: _tag(api, path) for kind, path in paths.items()}
    assert after_patch["product"] != before["product"] and after_patch["list"] != before["list"]
    assert after_patch["count"] == before["count"] and after_patch["categories"] == before["categories"]
    create_product(category="kitchen", price="99.00")  # the kitchen page, count and categories
    after_create = {kind: _tag(api, path) for kind, path in paths.items()}
    assert after_create["product"] == after_patch["product"]
    for kind in ("list", "count", "categories"):
        assert after_create[kind] != after_patch[kind], kind
    # The old tags now get the new answers, never a 304.
    for kind, path in paths.items():
        response = api.get(path, headers={"If-None-Match": before[kind]})
        assert response.status_code == 200, kind
        assert response.headers["ETag"] == after_create[kind], kind
    assert api.get(paths["product"]).get_json()["stock"] == 41
    assert api.get(paths["count"]).get_json() == {"count": 3}


def test_a_write_that_leaves_an_answer_alone_keeps_its_tag(
    api: FlaskClient, auth: dict[str, str], shop: dict[str, dict[str, Any]]
) -> None:
    paths = _reads(shop)
    before = {kind: _tag(api, path) for kind, path in paths.items()}
    _patch(api, auth, shop["hose"], stock=9, name="Garden hose")  # garden: outside every answer but the categories'
    for kind, path in paths.items():
        response = api.get(path, headers={"If-None-Match": before[kind]})
        assert response.status_code == 304, kind
        assert response.headers["ETag"] == before[kind], kind


def test_a_page_tag_covers_its_total_not_only_its_items(
    api: FlaskClient, create_product: CreateProduct, shop: dict[str, dict[str, Any]]
) -> None:
    # The first page of one item is the cheapest kitchen product, before and after: only the
    # total (X-Pagination, Link) changes, and the tag with it.
    path = f"{PRODUCTS}?category=kitchen&sort=price&page_size=1"
    before = api.get(path)
    create_product(category="kitchen", price="500.00")
    after = api.get(path, headers={"If-None-Match": before.headers["ETag"]})
    assert after.status_code == 200 and after.get_data() == before.get_data()
    assert after.headers["ETag"] != before.headers["ETag"]
    assert json.loads(after.headers["X-Pagination"])["total"] == 3


def test_the_categories_tag_follows_a_product_moving_category(
    api: FlaskClient, auth: dict[str, str], shop: dict[str, dict[str, Any]]
) -> None:
    before = _tag(api, CATEGORIES)
    _patch(api, auth, shop["pan"], category="garden")
    moved = api.get(CATEGORIES, headers={"If-None-Match": before})
    assert moved.status_code == 200 and moved.headers["ETag"] != before
    assert moved.get_json() == [{"category": "garden", "count": 2}, {"category": "kitchen", "count": 1}]


# --- Cache-Control ---------------------------------------------------------------------


def test_every_public_read_may_be_stored_but_is_revalidated(api: FlaskClient, shop: dict[str, dict[str, Any]]) -> None:
    for kind, path in _reads(shop).items():
        fresh = api.get(path)
        assert fresh.headers["Cache-Control"] == DEFAULT_CACHE_CONTROL, kind
        conditional = api.get(path, headers={"If-None-Match": fresh.headers["ETag"]})
        assert conditional.status_code == 304 and conditional.headers["Cache-Control"] == DEFAULT_CACHE_CONTROL
        assert api.head(path).headers["Cache-Control"] == DEFAULT_CACHE_CONTROL, kind


@pytest.mark.parametrize(
    ("max_age", "stale", "expected"),
    [
        (30, 60, "public, max-age=30, stale-while-revalidate=60"),
        (30, 0, "public, max-age=30"),
        (0, 15, "public, max-age=0, stale-while-revalidate=15"),
        (3600, 3600, "public, max-age=3600, stale-while-revalidate=3600"),
    ],
)
def test_an_operator_may_accept_bounded_staleness(
    make_api_app: Callable[..., Flask], auth: dict[str, str], max_age: int, stale: int, expected: str
) -> None:
    app = make_api_app(http_max_age_s=max_age, http_stale_while_revalidate_s=stale)
    client = app.test_client()
    created = client.post(PRODUCTS, json={"sku": "S-1", "name": "n", "price": "1", "category": "c"}, headers=auth)
    assert created.headers["Cache-Control"] == "no-store"  # a write, whatever the setting
    for path in (f"{PRODUCTS}/{created.get_json()['id']}", PRODUCTS, f"{PRODUCTS}/count", CATEGORIES):
        assert client.get(path).headers["Cache-Control"] == expected, path
    assert client.get(f"{PRODUCTS}/0123456789abcdef01234567").headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("http_max_age_s", -1),
        ("http_max_age_s", 3601),
        ("http_max_age_s", "ten"),
        ("http_max_age_s", "1.5"),
        ("http_stale_while_revalidate_s", -5),
        ("http_stale_while_revalidate_s", 86400),
    ],
)
def test_out_of_range_staleness_is_refused_at_start(name: str, value: Any) -> None:
    variable = {"http_max_age_s": "JOLLYJET_HTTP_MAX_AGE_S"}.get(name, "JOLLYJET_HTTP_STALE_WHILE_REVALIDATE_S")
    with pytest.raises(SettingsError, match=variable):
        make_settings(**{name: value})


@pytest.mark.parametrize(
    "path",
    [
        f"{PRODUCTS}/0123456789abcdef01234567",  # 404
        f"{PRODUCTS}/nope",  # 404, malformed
        f"{PRODUCTS}?page=0",  # 422
        f"{PRODUCTS}/count?sort=price",  # 422
        f"{PRODUCTS}?q=%FF",  # 400
        "/api/v1/nowhere",  # 404 from routing
    ],
)
def test_error_answers_are_never_stored(api: FlaskClient, path: str) -> None:
    response = api.get(path)
    assert response.status_code >= 400
    assert response.headers["Cache-Control"] == "no-store"
    assert "ETag" not in response.headers


# --- Link ------------------------------------------------------------------------------


def _links(response: TestResponse) -> dict[str, str]:
    """RFC 8288 Link header → {rel: target}."""
    header = response.headers.get("Link")
    if header is None:
        return {}
    links = {}
    for part in header.split(", <"):
        match = re.fullmatch(r'<?([^<>]+)>; rel="(first|prev|next|last)"', part)
        assert match, header
        links[match.group(2)] = match.group(1)
    return links


def _page_of(target: str) -> int:
    return int(dict(parse_qsl(urlsplit(target).query))["page"])


@pytest.fixture
def five(create_product: CreateProduct) -> list[dict[str, Any]]:
    return [create_product(price=f"{n}.00", category="five") for n in range(1, 6)]


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        (1, {"first": 1, "next": 2, "last": 3}),
        (2, {"first": 1, "prev": 1, "next": 3, "last": 3}),
        (3, {"first": 1, "prev": 2, "last": 3}),
        (4, {"first": 1, "last": 3}),  # past the last page: as X-Pagination, no prev or next
    ],
)
def test_list_pages_link_first_prev_next_last(
    api: FlaskClient, five: list[dict[str, Any]], page: int, expected: dict[str, int]
) -> None:
    response = api.get(f"{PRODUCTS}?category=five&sort=price&page_size=2&page={page}")
    links = _links(response)
    assert {rel: _page_of(target) for rel, target in links.items()} == expected
    pagination = json.loads(response.headers["X-Pagination"])
    assert {rel: pagination[f] for rel, f in [("first", "first_page"), ("last", "last_page")]} == {
        "first": expected["first"],
        "last": expected["last"],
    }


def test_following_next_walks_every_page_with_the_same_filters(api: FlaskClient, five: list[dict[str, Any]]) -> None:
    target: str | None = f"{PRODUCTS}?category=five&sort=-price&page_size=2&min_price=2&in_stock=true"
    seen = []
    while target is not None:
        response = api.get(target)
        assert response.status_code == 200
        seen += [item["price"] for item in response.get_json()]
        target = _links(response).get("next")
    assert seen == ["5.00", "4.00", "3.00", "2.00"]


def test_links_carry_validated_arguments_encoded_never_raw_text(
    api: FlaskClient, create_product: CreateProduct
) -> None:
    tricky = 'a, b>; rel="evil" <x\r'
    for _ in range(3):
        create_product(name=f"Item {tricky}", category="c;d", tags=["x y"])
    query = "q=a%2C+b%3E%3B+rel%3D%22evil%22+%3Cx%0D&category=c%3Bd&tag=x+y&min_price=0.50&is_active=true"
    response = api.get(f"{PRODUCTS}?{query}&page_size=1&page=2")
    assert response.status_code == 200 and len(response.get_json()) == 1
    header = response.headers["Link"]
    assert set(header) <= set('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789%+&=?/<>;, "_.-~')
    links = _links(response)
    assert set(links) == {"first", "prev", "next", "last"}
    for target in links.values():
        arguments = dict(parse_qsl(urlsplit(target).query))
        assert arguments["q"] == tricky and arguments["category"] == "c;d" and arguments["tag"] == "x y"
        assert arguments["min_price"] == "0.50" and arguments["is_active"] == "true"
        assert urlsplit(target).path == PRODUCTS and not urlsplit(target).netloc  # relative: no Host echoed
        assert api.get(target).status_code == 200


def test_no_link_beyond_the_configured_page_cap(make_api_app: Callable[..., Flask], auth: dict[str, str]) -> None:
    client = make_api_app(max_page=2).test_client()
    for n in range(5):
        payload = {"sku": f"CAP-{n}", "name": "n", "price": "1", "category": "c"}
        assert client.post(PRODUCTS, json=payload, headers=auth).status_code == 201
    response = client.get(f"{PRODUCTS}?page_size=1&page=2")
    assert {rel: _page_of(t) for rel, t in _links(response).items()} == {"first": 1, "prev": 1}
    assert json.loads(response.headers["X-Pagination"])["last_page"] == 5  # the count is still the truth


def test_an_empty_result_has_no_pages_to_link(api: FlaskClient) -> None:
    response = api.get(f"{PRODUCTS}?category=none")
    assert response.get_json() == [] and "Link" not in response.headers
    assert response.headers["ETag"] and response.headers["Cache-Control"] == DEFAULT_CACHE_CONTROL
