"""Overload protection at unit level: the MongoDB bulkhead sheds with 503, the rate limits answer 429,
both with Retry-After and the JSON error shape; cached and ordinary reads are untouched."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from limits import parse_many
from prometheus_client import REGISTRY

from jollyjet.extensions import services_of
from jollyjet.http import RATE_LIMIT_AUTH_FAILURES, RATE_LIMIT_DEEP_PAGES, RATE_LIMIT_SEARCH
from jollyjet.products.repository import Bulkhead, MongoProductRepository
from jollyjet.settings import SettingsError
from tests.conftest import TOKEN, make_app, make_settings
from tests.support.factories import product_payload
from tests.support.fake_cache import FakeCacheBackend

AUTH = {"Authorization": f"Bearer {TOKEN}"}
PRODUCTS = "/api/v1/products"


def shed_count(reason: str) -> float:
    return REGISTRY.get_sample_value("jollyjet_requests_shed_total", {"reason": reason}) or 0.0


def app_with(**overrides: Any) -> Flask:
    return make_app(make_settings(**overrides), cache_backend=FakeCacheBackend())


def bulkhead_of(app: Flask) -> Bulkhead:
    """The bulkhead between the cached repository and MongoDB."""
    cache = services_of(app).require_cache()
    bounded = cache.repository.inner
    assert isinstance(bounded, MongoProductRepository) and bounded.bulkhead is not None
    return bounded.bulkhead


@contextmanager
def bulkhead_full(app: Flask) -> Iterator[None]:
    """Every slot taken, as by requests waiting on a slow MongoDB."""
    bulkhead = bulkhead_of(app)
    slots = [bulkhead.slot() for _ in range(bulkhead.size)]
    for slot in slots:
        slot.__enter__()
    try:
        yield
    finally:
        for slot in slots:
            slot.__exit__(None, None, None)


def assert_json_error(response: Any, status: int, words: str) -> None:
    assert response.status_code == status
    body = response.get_json()
    assert body["code"] == status and words in body["message"], body
    assert int(response.headers["Retry-After"]) >= 1


# --- the bulkhead -------------------------------------------------------------------


def test_a_full_bulkhead_sheds_misses_and_writes_with_503_but_serves_hits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("jollyjet.app_factory.DB_BULKHEAD_WAIT_MS", 0)
    app = app_with(db_bulkhead=1)
    client = app.test_client()
    hot = client.post(PRODUCTS, json=product_payload(), headers=AUTH).get_json()["id"]
    cold = "0123456789abcdef01234567"  # never cached: its read goes to MongoDB
    assert client.get(f"{PRODUCTS}/{hot}").headers["X-Cache"] in ("HIT", "MISS")
    shed_before = shed_count("bulkhead")
    with bulkhead_full(app):
        hit = client.get(f"{PRODUCTS}/{hot}")
        assert hit.status_code == 200 and hit.headers["X-Cache"] == "HIT"
        assert_json_error(client.get(f"{PRODUCTS}/{cold}"), 503, "overloaded")
        assert_json_error(client.get(f"{PRODUCTS}?category=never-read"), 503, "overloaded")
        assert_json_error(client.patch(f"{PRODUCTS}/{hot}", json={"stock": 1}, headers=AUTH), 503, "overloaded")
    assert shed_count("bulkhead") - shed_before == 3
    # Freed: the same requests are served, and the shed write changed nothing.
    assert client.get(f"{PRODUCTS}/{cold}").status_code == 404
    assert client.get(f"{PRODUCTS}?category=never-read").status_code == 200
    assert client.get(f"{PRODUCTS}/{hot}").get_json()["version"] == 1


def test_the_bulkhead_waits_its_bounded_while_before_shedding() -> None:
    bulkhead = Bulkhead(1, wait_ms=0)
    with bulkhead.slot(), pytest.raises(Exception, match="MongoDB calls already in flight"), bulkhead.slot():
        pass
    with bulkhead.slot():  # released: taken again at once
        pass


def test_the_bulkhead_without_cache_bounds_the_service_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("jollyjet.app_factory.DB_BULKHEAD_WAIT_MS", 0)
    app = make_app(make_settings(cache_enabled=False, db_bulkhead=1))
    bounded = services_of(app).products
    assert isinstance(bounded, MongoProductRepository) and bounded.bulkhead is not None
    with bounded.bulkhead.slot():
        assert_json_error(app.test_client().get(PRODUCTS), 503, "overloaded")


def test_the_bulkhead_size_defaults_to_half_the_web_threads() -> None:
    assert make_settings(web_threads=4).db_bulkhead_size == 2
    assert make_settings(web_threads=5).db_bulkhead_size == 3
    assert make_settings(web_threads=1).db_bulkhead_size == 1
    assert make_settings(web_threads=4, db_bulkhead=3).db_bulkhead_size == 3
    with pytest.raises(SettingsError, match="JOLLYJET_DB_BULKHEAD"):
        make_settings(db_bulkhead=0)


# --- rate limits --------------------------------------------------------------------


def test_searches_beyond_the_limit_answer_429_with_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("jollyjet.http.RATE_LIMIT_SEARCH", "3/minute")
    client = app_with().test_client()
    before = shed_count("search")
    answers = [client.get(f"{PRODUCTS}?q=unique{i}").status_code for i in range(3)]
    assert answers == [200, 200, 200]
    assert_json_error(client.get(f"{PRODUCTS}?q=another"), 429, "q= searches")
    assert_json_error(client.get(f"{PRODUCTS}/count?q=another"), 429, "q= searches")
    assert shed_count("search") - before == 2
    # What is not a search is not counted against it.
    assert client.get(f"{PRODUCTS}?category=audio").status_code == 200
    assert client.get(f"{PRODUCTS}/count").status_code == 200


def test_deep_pages_beyond_the_limit_answer_429(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("jollyjet.http.DEEP_PAGE_OFFSET", 100)
    monkeypatch.setattr("jollyjet.http.RATE_LIMIT_DEEP_PAGES", "2/minute")
    client = app_with().test_client()
    assert [client.get(f"{PRODUCTS}?page={p}&page_size=50").status_code for p in (3, 4)] == [200, 200]
    assert_json_error(client.get(f"{PRODUCTS}?page=5&page_size=50"), 429, "deep list pages")
    # Shallow pages (offset under the bound) are not deep, whatever their number.
    assert client.get(f"{PRODUCTS}?page=2&page_size=50").status_code == 200
    assert client.get(f"{PRODUCTS}?page=99&page_size=1").status_code == 200
    # Junk page numbers are the schema's to refuse, not the limiter's.
    assert client.get(f"{PRODUCTS}?page=x").status_code == 422


def test_failed_authentication_beyond_the_limit_answers_429_even_with_a_good_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("jollyjet.http.RATE_LIMIT_AUTH_FAILURES", "2/minute")
    client = app_with().test_client()
    wrong = {"Authorization": "Bearer wrong-token"}
    assert client.post(PRODUCTS, json=product_payload(), headers=AUTH).status_code == 201  # successes do not count
    assert [client.post(PRODUCTS, json={}, headers=wrong).status_code for _ in range(2)] == [401, 401]
    assert_json_error(client.post(PRODUCTS, json={}, headers=wrong), 429, "failed authentications")
    assert_json_error(client.post(PRODUCTS, json=product_payload(), headers=AUTH), 429, "failed authentications")
    assert_json_error(client.delete("/api/v1/cache", headers=AUTH), 429, "failed authentications")
    # Public reads do not authenticate: untouched.
    assert client.get(PRODUCTS).status_code == 200


def test_ordinary_reads_are_never_limited(client: FlaskClient, auth: dict[str, str]) -> None:
    created = client.post(PRODUCTS, json=product_payload(), headers=auth).get_json()["id"]
    statuses = set()
    for _ in range(60):  # far beyond every default limit's per-second count
        statuses.add(client.get(f"{PRODUCTS}/{created}").status_code)
        statuses.add(client.get(f"{PRODUCTS}?category=audio&page=2").status_code)
        statuses.add(client.get(f"{PRODUCTS}/count").status_code)
        statuses.add(client.get("/api/v1/categories").status_code)
    assert statuses == {200}


def test_limits_count_per_forwarded_address_only_behind_trusted_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("jollyjet.http.RATE_LIMIT_SEARCH", "1/minute")
    trusting = app_with(trusted_proxies=1).test_client()
    first = {"X-Forwarded-For": "203.0.113.7"}
    assert trusting.get(f"{PRODUCTS}?q=a", headers=first).status_code == 200
    assert trusting.get(f"{PRODUCTS}?q=b", headers=first).status_code == 429
    assert trusting.get(f"{PRODUCTS}?q=c", headers={"X-Forwarded-For": "198.51.100.1"}).status_code == 200
    # Not an address: one shared bucket, never a key made of the header's text.
    assert trusting.get(f"{PRODUCTS}?q=d", headers={"X-Forwarded-For": "x" * 500}).status_code == 200
    assert trusting.get(f"{PRODUCTS}?q=e", headers={"X-Forwarded-For": "not-an-ip"}).status_code == 429

    ignoring = app_with().test_client()
    assert ignoring.get(f"{PRODUCTS}?q=a", headers=first).status_code == 200
    assert ignoring.get(f"{PRODUCTS}?q=b", headers={"X-Forwarded-For": "198.51.100.1"}).status_code == 429


def test_limits_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("jollyjet.http.RATE_LIMIT_SEARCH", "1/minute")
    client = app_with(rate_limits_enabled=False).test_client()
    assert {client.get(f"{PRODUCTS}?q=s{i}").status_code for i in range(5)} == {200}


@pytest.mark.parametrize("limit", [RATE_LIMIT_SEARCH, RATE_LIMIT_DEEP_PAGES, RATE_LIMIT_AUTH_FAILURES])
def test_the_rate_limits_parse(limit: str) -> None:
    # flask-limiter parses them on every limited request: a typo would fail requests or never limit.
    assert parse_many(limit)


def test_limit_storage_is_the_cache_redis_or_memory() -> None:
    from jollyjet.http import storage_uri

    assert storage_uri(make_settings())[0] == "memory://"
    uri, options = storage_uri(make_settings(redis_url="redis://127.0.0.1:6390/0", redis_timeout_ms=150))
    assert uri == "redis://127.0.0.1:6390/0" and options["socket_timeout"] == 0.15
    assert storage_uri(make_settings(redis_url="unix:///run/redis.sock"))[0] == "redis+unix:///run/redis.sock"
    assert storage_uri(make_settings(rate_limit_storage_uri="redis+cluster://n1:7000"))[0] == "redis+cluster://n1:7000"
    with pytest.raises(SettingsError, match="JOLLYJET_RATE_LIMIT_STORAGE_URI"):
        make_settings(rate_limit_storage_uri="http://nope")
