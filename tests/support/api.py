"""Helpers for HTTP API tests: what the store holds, and the shape of error responses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Flask
from werkzeug.test import TestResponse

from jollyjet.cache.keys import CacheKeys
from jollyjet.cache.store import CacheBackend
from jollyjet.extensions import services_of
from jollyjet.products.record import ProductDocument
from tests.support.fake_cache import cache_contents

PRODUCTS = "/api/v1/products"


@dataclass(frozen=True)
class StoreState:
    """Every product's (version, updated_at) in MongoDB and every cache key with its value."""

    documents: dict[str, tuple[int, Any]]
    cache: dict[str, object]


def cache_keys(app: Flask) -> CacheKeys:
    """The app's cache key names, also when its cache is off (then nothing may appear under them)."""
    return CacheKeys(services_of(app).settings.cache_key_prefix)


def store_state(app: Flask, cache: CacheBackend) -> StoreState:
    """Read MongoDB and the cache directly (not through the API, whose reads fill the cache)."""
    with app.app_context():
        rows = ProductDocument.objects.only("version", "updated_at")
        documents = {str(d.id): (d.version, d.updated_at) for d in rows}
    contents = cache_contents(cache, cache_keys(app).service_pattern())
    # The catalog's set of writes in flight is bookkeeping, not data: a write, even one MongoDB
    # rejects, creates it (with a member that never lapses) and leaves it as it found it otherwise.
    contents.pop(cache_keys(app).writes_in_flight, None)
    return StoreState(documents, contents)


def product_count(app: Flask) -> int:
    """Products in MongoDB."""
    with app.app_context():
        return int(ProductDocument.objects.count())


def assert_json_error(response: TestResponse, status: int, *fragments: str) -> dict[str, Any]:
    """The response is a JSON error with this status whose body mentions every fragment."""
    assert response.status_code == status, (response.status_code, response.get_data()[:500])
    assert response.mimetype == "application/json", response.mimetype
    body = response.get_json()
    assert isinstance(body, dict) and body["code"] == status, body
    text = str(body)
    for fragment in fragments:
        assert fragment in text, (fragment, body)
    return body
