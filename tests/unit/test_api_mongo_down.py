"""MongoDB unreachable: every product endpoint answers 503 with Retry-After, and the cache stays untouched."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from tests.support.api import PRODUCTS, assert_json_error
from tests.support.factories import product_payload
from tests.support.fake_cache import FakeCacheBackend, cache_contents
from tests.support.redis_server import free_port

pytestmark = pytest.mark.usefixtures("no_unexpected_errors")

_ID = "0123456789abcdef01234567"
# Each request waits for pymongo's server selection (about half a second), so one
# request per code path: reads, the write paths, and the If-Match path that reads first.
REQUESTS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "get": ("GET", f"{PRODUCTS}/{_ID}", {}),
    "list": ("GET", f"{PRODUCTS}?category=kitchen&sort=price", {}),
    "count": ("GET", f"{PRODUCTS}/count?in_stock=true", {}),
    "categories": ("GET", "/api/v1/categories", {}),
    "post": ("POST", PRODUCTS, {"json": product_payload()}),
    "patch": ("PATCH", f"{PRODUCTS}/{_ID}", {"json": {"stock": 1}}),
    "patch-if-match-list": (
        "PATCH",
        f"{PRODUCTS}/{_ID}",
        {"json": {"stock": 1}, "headers": {"If-Match": '"v1", "v2"'}},
    ),
    "delete": ("DELETE", f"{PRODUCTS}/{_ID}", {}),
}


# A list or count read registers its filters and creates their generation counters before it
# asks MongoDB, whatever MongoDB then does; the first registration also moves the global
# generation forward (scripts.READ_FILTERED): bookkeeping of the cache, not data.
# The set of writes in flight is created with a member that never lapses (scripts.MARK_CATALOG_WRITE).
_BOOKKEEPING = (":filters", ":fgen:", ":{products}:gen", ":{products}:writes")


def _cache_contents(cache: FakeCacheBackend) -> dict[str, object]:
    return {key: value for key, value in cache_contents(cache).items() if not any(p in key for p in _BOOKKEEPING)}


@pytest.fixture
def dead_mongo_app(make_api_app: Callable[..., Flask]) -> Flask:
    """The app pointed at a port nobody listens on, with the shortest server-selection timeout."""
    return make_api_app(mongodb_uri=f"mongodb://127.0.0.1:{free_port()}/x", mongodb_timeout_ms=100)


@pytest.mark.parametrize("name", REQUESTS)
def test_unreachable_mongodb_is_503(
    dead_mongo_app: Flask,
    fake_cache: FakeCacheBackend,
    auth: dict[str, str],
    name: str,
) -> None:
    before = _cache_contents(fake_cache)
    method, path, extra = REQUESTS[name]
    headers = {**auth, **extra.get("headers", {})}
    response = dead_mongo_app.test_client().open(path, method=method, json=extra.get("json"), headers=headers)
    assert_json_error(response, 503, "database is unavailable")
    assert int(response.headers["Retry-After"]) > 0
    assert response.headers["Cache-Control"] == "no-store"  # a CDN must not keep serving the outage
    assert _cache_contents(fake_cache) == before  # no entry, fill lock, tombstone or popularity count


@pytest.mark.parametrize("cache_mode", ["cached"], indirect=True)
def test_monitoring_reports_an_unreachable_mongodb_in_its_figures_not_as_an_error(
    dead_mongo_app: Flask, auth: dict[str, str]
) -> None:
    client = dead_mongo_app.test_client()
    stats = client.get("/api/v1/cache/stats", headers=auth)
    assert stats.status_code == 200, stats.get_json()
    body = stats.get_json()
    assert body["pending_repairs"] is None and body["last_audit"] is None and body["jobs"] == {}
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    # The MongoDB-backed figures are left out; the recorded metrics are all there.
    text = metrics.get_data(as_text=True)
    assert "jollyjet_cache_repair_backlog" not in text and "jollyjet_cache_requests_total" in text
