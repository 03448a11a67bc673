"""Bad input of every kind is a 4xx JSON error naming the problem, and nothing is written.

Every case snapshots MongoDB and the cache before and after the request: a refused
request must not write a document, a cache entry, a lock or a generation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.support.api import PRODUCTS, assert_json_error, store_state
from tests.support.factories import product_payload
from tests.support.fake_cache import FakeCacheBackend
from tests.unit.conftest import CreateProduct

pytestmark = pytest.mark.usefixtures("no_unexpected_errors")

JSON = "application/json"
_REMOVE: Any = object()


def _dumps(document: Any) -> bytes:
    return json.dumps(document).encode()


def _nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = {"a": value}
    return value


def _nested_list(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


def _with_literal(name: str, literal: str) -> bytes:
    """A valid product body whose field `name` is the raw JSON text `literal`."""
    return _dumps(product_payload(**{name: "@@"})).replace(b'"@@"', literal.encode())


@dataclass(frozen=True)
class RawBody:
    """A whole request body, sent as is to POST, PUT and PATCH."""

    body: bytes | None
    status: int
    fragment: str
    content_type: str | None = JSON
    patch_fragment: str | None = None  # when PATCH words the problem differently


_VALID = _dumps(product_payload())
RAW_BODIES = {
    "malformed": RawBody(b'{"sku": ', 400, "not valid JSON"),
    "trailing-garbage": RawBody(_VALID + b" x", 400, "not valid JSON"),
    "single-quotes": RawBody(b"{'sku': 'A'}", 400, "not valid JSON"),
    "byte-order-mark": RawBody(b"\xef\xbb\xbf" + _VALID, 400, "not valid JSON"),
    "text-plain": RawBody(_VALID, 415, "must be JSON", "text/plain"),
    "form-encoded": RawBody(b"sku=A&name=B", 415, "must be JSON", "application/x-www-form-urlencoded"),
    "no-content-type": RawBody(_VALID, 415, "must be JSON", None),
    "no-body-no-content-type": RawBody(None, 415, "must be JSON", None),
    "empty-body": RawBody(b"", 400, "the request body is empty"),
    "empty-object": RawBody(b"{}", 422, "Missing data", patch_fragment="at least one field"),
    "array": RawBody(b"[]", 422, "Invalid input type"),
    "array-of-product": RawBody(_dumps([product_payload()]), 422, "Invalid input type"),
    "string": RawBody(b'"product"', 422, "Invalid input type"),
    "number": RawBody(b"42", 422, "Invalid input type"),
    "null": RawBody(b"null", 422, "Invalid input type"),
    "true": RawBody(b"true", 422, "Invalid input type"),
    "nan": RawBody(_with_literal("price", "NaN"), 400, "NaN"),
    "infinity": RawBody(_with_literal("price", "Infinity"), 400, "Infinity"),
    "minus-infinity": RawBody(_with_literal("stock", "-Infinity"), 400, "Infinity"),
    "number-with-40-digits": RawBody(_with_literal("stock", "1" + "0" * 39), 400, "digits"),
    "number-with-5000-digits": RawBody(_with_literal("price", "9" * 5000), 400, "digits"),
    "duplicate-key": RawBody(b'{"price": "1.00", "price": "2.00"}', 400, "duplicate key 'price'"),
    "invalid-utf8": RawBody(b'{"name": "caf\xe9"}', 400, "UTF-8"),
    "utf16": RawBody(_VALID.decode().encode("utf-16"), 400, "UTF-8"),
    "lone-surrogate": RawBody(b'{"name": "\\ud800"}', 400, "surrogate"),
    "lone-surrogate-in-key": RawBody(b'{"\\udfff": 1}', 400, "surrogate"),
    "lone-surrogate-in-list": RawBody(_with_literal("tags", '["ok", "\\udc00"]'), 400, "surrogate"),
    "deep-array": RawBody(b"[" * 10_000 + b"]" * 10_000, 400, "nested too deeply"),
    "deep-object": RawBody(b'{"a":' * 10_000 + b"1" + b"}" * 10_000, 400, "nested too deeply"),
    "oversized": RawBody(_dumps(product_payload(description="d" * 70_000)), 413, "larger than 65536 bytes"),
}


@dataclass(frozen=True)
class FieldCase:
    """Product fields to override (or _REMOVE); POST sends a full body with them, PATCH only them."""

    fields: dict[str, Any]
    fragment: str
    methods: tuple[str, ...] = ("POST", "PATCH")


FIELD_CASES = {
    "price-as-list": FieldCase({"price": ["1.00"]}, "price"),
    "price-as-object": FieldCase({"price": {"amount": 1}}, "price"),
    "price-as-bool": FieldCase({"price": True}, "price"),
    "price-null": FieldCase({"price": None}, "price"),
    "price-empty-string": FieldCase({"price": ""}, "price"),
    "price-negative": FieldCase({"price": "-1.00"}, "price"),
    "price-negative-number": FieldCase({"price": -0.01}, "price"),
    "price-3-decimals": FieldCase({"price": "1.005"}, "at most two decimal places"),
    "price-3-decimals-number": FieldCase({"price": 1.005}, "at most two decimal places"),
    "price-too-large": FieldCase({"price": "1000000000.01"}, "price"),
    "price-huge-exponent": FieldCase({"price": 1e300}, "price"),
    "price-40-digit-string": FieldCase({"price": "9" * 40}, "price"),
    "price-5000-digit-string": FieldCase({"price": "9" * 5000}, "price"),
    "price-leading-space": FieldCase({"price": " 1.00"}, "price"),
    "price-underscore": FieldCase({"price": "1_000"}, "price"),
    "price-exponent-string": FieldCase({"price": "1E+2"}, "price"),
    "price-nan-string": FieldCase({"price": "NaN"}, "price"),
    "price-infinity-string": FieldCase({"price": "Infinity"}, "price"),
    "price-missing": FieldCase({"price": _REMOVE}, "Missing data", ("POST",)),
    "stock-as-string": FieldCase({"stock": "5"}, "stock"),
    "stock-fraction": FieldCase({"stock": 5.5}, "stock"),
    "stock-5.0": FieldCase({"stock": 5.0}, "stock"),
    "stock-as-bool": FieldCase({"stock": True}, "stock"),
    "stock-negative": FieldCase({"stock": -1}, "stock"),
    "stock-too-large": FieldCase({"stock": 10**12}, "stock"),
    "stock-null": FieldCase({"stock": None}, "stock"),
    "is_active-as-string": FieldCase({"is_active": "true"}, "is_active"),
    "is_active-as-1": FieldCase({"is_active": 1}, "is_active"),
    "is_active-as-0": FieldCase({"is_active": 0}, "is_active"),
    "is_active-null": FieldCase({"is_active": None}, "is_active"),
    "name-blank": FieldCase({"name": "   "}, "name"),
    "name-tabs-and-newlines": FieldCase({"name": "\t\n"}, "name"),
    "name-empty": FieldCase({"name": ""}, "name"),
    "name-as-number": FieldCase({"name": 5}, "name"),
    "name-too-long": FieldCase({"name": "n" * 201}, "name"),
    "name-deeply-nested": FieldCase({"name": _nested(500)}, "name"),
    "name-missing": FieldCase({"name": _REMOVE}, "Missing data", ("POST",)),
    "sku-with-space": FieldCase({"sku": "A B"}, "sku"),
    "sku-trailing-newline": FieldCase({"sku": "ABC\n"}, "sku"),
    "sku-empty": FieldCase({"sku": ""}, "sku"),
    "sku-too-long": FieldCase({"sku": "A" * 65}, "sku"),
    "sku-operator": FieldCase({"sku": "$where"}, "sku"),
    "sku-as-query-object": FieldCase({"sku": {"$ne": None}}, "sku"),
    "currency-lower-case": FieldCase({"currency": "usd"}, "currency"),
    "currency-too-short": FieldCase({"currency": "US"}, "currency"),
    "currency-too-long": FieldCase({"currency": "EURO"}, "currency"),
    "currency-trailing-newline": FieldCase({"currency": "USD\n"}, "currency"),
    "currency-as-number": FieldCase({"currency": 840}, "currency"),
    "category-blank": FieldCase({"category": " "}, "category"),
    "category-too-long": FieldCase({"category": "c" * 101}, "category"),
    "tags-too-many": FieldCase({"tags": [f"t{n}" for n in range(21)]}, "tags"),
    "tags-as-string": FieldCase({"tags": "a,b"}, "tags"),
    "tags-number-item": FieldCase({"tags": ["ok", 1]}, "tags.1"),
    "tags-blank-item": FieldCase({"tags": [" "]}, "tags"),
    "tags-long-item": FieldCase({"tags": ["t" * 51]}, "tags"),
    "tags-deeply-nested": FieldCase({"tags": _nested_list(500)}, "tags"),
    "description-too-long": FieldCase({"description": "d" * 5001}, "description"),
    "description-null": FieldCase({"description": None}, "description"),
    "unknown-field": FieldCase({"colour": "red"}, "colour"),
    "operator-field": FieldCase({"$set": {"version": 9}}, "$set"),
    "version-is-not-input": FieldCase({"version": 7}, "version"),
    "id-is-not-input": FieldCase({"id": "0123456789abcdef01234567"}, "id"),
    "created_at-is-not-input": FieldCase({"created_at": "2020-01-01T00:00:00Z"}, "created_at"),
}


@dataclass(frozen=True)
class QueryCase:
    """A query string for the list (and, when count_too, the count) endpoint."""

    query: str
    fragment: str
    status: int = 422
    count_too: bool = True


QUERY_CASES = {
    "q-with-nul": QueryCase("q=a%00b", "NUL"),
    "q-empty": QueryCase("q=", "q"),
    "q-too-long": QueryCase("q=" + "x" * 101, "q"),
    "q-invalid-utf8": QueryCase("q=%ff", "not valid UTF-8", 400),
    "q-truncated-utf8": QueryCase("q=caf%c3", "not valid UTF-8", 400),
    "q-encoded-surrogate": QueryCase("q=%ed%a0%80", "not valid UTF-8", 400),
    "page-10e30": QueryCase(f"page={10**30}", "must be at most 10000", count_too=False),
    "page-5000-digits": QueryCase("page=" + "9" * 5000, "page", count_too=False),
    "page-negative": QueryCase("page=-1", "page", count_too=False),
    "page-zero": QueryCase("page=0", "page", count_too=False),
    "page-word": QueryCase("page=abc", "page", count_too=False),
    "page-fraction": QueryCase("page=1.5", "page", count_too=False),
    "page-exponent": QueryCase("page=1e3", "page", count_too=False),
    "page-empty": QueryCase("page=", "page", count_too=False),
    "page-over-cap": QueryCase("page=10001", "must be at most 10000", count_too=False),
    "page_size-zero": QueryCase("page_size=0", "page_size", count_too=False),
    "page_size-negative": QueryCase("page_size=-5", "page_size", count_too=False),
    "page_size-over-cap": QueryCase("page_size=101", "must be at most 100", count_too=False),
    "page-twice": QueryCase("page=1&page=2", "more than once", count_too=False),
    "sort-unknown": QueryCase("sort=bogus", "sort", count_too=False),
    "sort-two-fields": QueryCase("sort=price,name", "sort", count_too=False),
    "sort-plus": QueryCase("sort=%2Bprice", "sort", count_too=False),
    "sort-double-minus": QueryCase("sort=--price", "sort", count_too=False),
    "sort-mongo-field": QueryCase("sort=price_cents", "sort", count_too=False),
    "sort-empty": QueryCase("sort=", "sort", count_too=False),
    "unknown-parameter": QueryCase("foo=1", "foo"),
    "parameter-names-are-case-sensitive": QueryCase("Category=kitchen", "Category"),
    "operator-parameter": QueryCase("price_cents[$gt]=0", "price_cents[$gt]"),
    "category-twice": QueryCase("category=a&category=b", "more than once"),
    "category-empty": QueryCase("category=", "category"),
    "tag-too-long": QueryCase("tag=" + "t" * 51, "tag"),
    "min_price-word": QueryCase("min_price=abc", "min_price"),
    "min_price-3-decimals": QueryCase("min_price=1.001", "at most two decimal places"),
    "min_price-negative": QueryCase("min_price=-1", "min_price"),
    "min_price-nan": QueryCase("min_price=NaN", "min_price"),
    "min_price-exponent": QueryCase("min_price=1e3", "min_price"),
    "max_price-infinity": QueryCase("max_price=Infinity", "max_price"),
    "max_price-too-large": QueryCase("max_price=1000000000.01", "max_price"),
    "in_stock-maybe": QueryCase("in_stock=maybe", "in_stock"),
    "in_stock-empty": QueryCase("in_stock=", "in_stock"),
    "is_active-2": QueryCase("is_active=2", "is_active"),
}


def assert_names_problem(response: TestResponse, status: int, fragment: str) -> None:
    """A JSON error with this status whose message (not only its details) names the problem."""
    body = assert_json_error(response, status)
    assert body["status"] and fragment in body["message"], (fragment, body)


@pytest.fixture
def target(create_product: CreateProduct) -> str:
    """One existing product, so PUT and PATCH have something to (not) change."""
    return str(create_product()["id"])


@pytest.fixture(autouse=True)
def unchanged(api_app: Flask, fake_cache: FakeCacheBackend, target: str) -> Any:
    """Snapshot MongoDB and the cache before the request; afterwards they must be identical."""
    before = store_state(api_app, fake_cache)
    yield
    assert store_state(api_app, fake_cache) == before


def _write(
    api: FlaskClient, auth: dict[str, str], method: str, target: str, body: bytes | None, content_type: str | None
) -> TestResponse:
    path = PRODUCTS if method == "POST" else f"{PRODUCTS}/{target}"
    kwargs: dict[str, Any] = {"method": method, "headers": auth}
    if body is not None:
        kwargs["data"] = body
    if content_type is not None:
        kwargs["content_type"] = content_type
    return api.open(path, **kwargs)


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
@pytest.mark.parametrize("case", RAW_BODIES.values(), ids=RAW_BODIES.keys())
def test_bad_body(api: FlaskClient, auth: dict[str, str], target: str, method: str, case: RawBody) -> None:
    response = _write(api, auth, method, target, case.body, case.content_type)
    fragment = case.patch_fragment if method == "PATCH" and case.patch_fragment else case.fragment
    assert_names_problem(response, case.status, fragment)


# PUT loads the same schema as POST (the raw-body cases cover its route), so field cases run on POST and PATCH.
_FIELD_PARAMS = [
    pytest.param(method, case, id=f"{name}-{method}")
    for name, case in FIELD_CASES.items()
    for method in ("POST", "PATCH")
    if method in case.methods
]


@pytest.mark.parametrize(("method", "case"), _FIELD_PARAMS)
def test_bad_field(api: FlaskClient, auth: dict[str, str], target: str, method: str, case: FieldCase) -> None:
    sent = dict(case.fields) if method == "PATCH" else product_payload(**case.fields)
    body = {name: value for name, value in sent.items() if value is not _REMOVE}
    response = _write(api, auth, method, target, _dumps(body), JSON)
    assert_names_problem(response, 422, case.fragment)


@pytest.mark.parametrize("case", QUERY_CASES.values(), ids=QUERY_CASES.keys())
def test_bad_list_query(api: FlaskClient, case: QueryCase) -> None:
    assert_names_problem(api.get(f"{PRODUCTS}?{case.query}"), case.status, case.fragment)


@pytest.mark.parametrize(
    "case", [c for c in QUERY_CASES.values() if c.count_too], ids=[k for k, c in QUERY_CASES.items() if c.count_too]
)
def test_bad_count_query(api: FlaskClient, case: QueryCase) -> None:
    assert_names_problem(api.get(f"{PRODUCTS}/count?{case.query}"), case.status, case.fragment)


def test_patch_with_an_empty_object(api: FlaskClient, auth: dict[str, str], target: str) -> None:
    response = api.patch(f"{PRODUCTS}/{target}", json={}, headers=auth)
    assert_names_problem(response, 422, "send at least one field to change")


def test_validation_errors_name_every_field(api: FlaskClient, auth: dict[str, str]) -> None:
    body = assert_json_error(api.post(PRODUCTS, json={"price": "x", "stock": "y"}, headers=auth), 422)
    assert set(body["errors"]["json"]) == {"price", "stock", "sku", "name", "category"}
    assert body["status"] == "Unprocessable Entity" and "json.price" in body["message"]


def test_error_message_stays_short_for_many_unknown_fields(api: FlaskClient, auth: dict[str, str]) -> None:
    body = product_payload(**{f"field_{n}_{'x' * 200}": n for n in range(100)})
    error = assert_json_error(api.post(PRODUCTS, json=body, headers=auth), 422, "Unknown field")
    assert len(error["message"]) <= 500 and len(error["errors"]["json"]) == 100
