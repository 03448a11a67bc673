"""The cache against a real redis-server: write-through, invalidation, fallback when Redis stops."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
from flask import Flask
from flask.testing import FlaskClient

from jollyjet import create_app
from jollyjet.cache.fence import BreakerState, CacheRepairRecord
from jollyjet.cache.store import CacheBackend, CacheUnavailable
from jollyjet.extensions import services_of
from jollyjet.jobs.repair import repair_failed_writes
from tests.conftest import TOKEN, make_app, make_settings
from tests.support.events import EventCounter
from tests.support.factories import product_payload
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def create(client: FlaskClient, **fields: object) -> dict[str, object]:
    response = client.post("/api/v1/products", json=product_payload(**fields), headers=AUTH)
    assert response.status_code == 201, response.json
    return response.json  # type: ignore[no-any-return]


def test_write_through_lands_in_redis_with_version_and_ttl(redis_app: Flask, redis_server: RedisServer) -> None:
    client = redis_app.test_client()
    product = create(client)
    services = services_of(redis_app)
    key = services.cache.keys.product(product["id"]).entry
    raw = redis_server.client()
    assert raw.hget(key, "v") == b"1"
    ttl = raw.ttl(key)
    assert 3600 * 0.9 - 1 <= ttl <= 3600 * 1.1  # product TTL with ±10 % jitter

    client.patch(f"/api/v1/products/{product['id']}", json={"stock": 0}, headers=AUTH)
    assert raw.hget(key, "v") == b"2"
    got = client.get(f"/api/v1/products/{product['id']}")
    assert got.headers["X-Cache"] == "HIT" and got.json["stock"] == 0

    client.delete(f"/api/v1/products/{product['id']}", headers=AUTH)
    assert raw.hget(key, "d") is None and raw.hget(key, "v") == b"3"  # tombstone
    assert client.get(f"/api/v1/products/{product['id']}").status_code == 404


def test_list_and_count_hits_until_a_write(redis_app: Flask) -> None:
    client = redis_app.test_client()
    create(client, category="lamps")
    url = "/api/v1/products?category=lamps"
    assert client.get(url).headers["X-Cache"] == "MISS"
    assert client.get(url).headers["X-Cache"] == "HIT"
    assert client.get("/api/v1/products/count?category=lamps").json == {"count": 1}
    assert client.get("/api/v1/products/count?category=lamps").headers["X-Cache"] == "HIT"
    create(client, category="lamps")
    fresh = client.get(url)
    assert fresh.headers["X-Cache"] == "MISS" and len(fresh.json) == 2
    assert client.get("/api/v1/products/count?category=lamps").json == {"count": 2}


def test_categories_hit_until_a_write_changes_them(redis_app: Flask) -> None:
    client = redis_app.test_client()
    alpha = create(client, category="alpha")
    assert client.get("/api/v1/categories").headers["X-Cache"] == "MISS"
    assert client.get("/api/v1/categories").headers["X-Cache"] == "HIT"
    # A write that changes neither the members nor a category leaves the list cached.
    client.patch(f"/api/v1/products/{alpha['id']}", json={"stock": 1}, headers=AUTH)
    assert client.get("/api/v1/categories").headers["X-Cache"] == "HIT"
    create(client, category="beta")
    after = client.get("/api/v1/categories")
    assert after.headers["X-Cache"] == "MISS"
    assert {row["category"] for row in after.json} == {"alpha", "beta"}
    client.patch(f"/api/v1/products/{alpha['id']}", json={"category": "beta"}, headers=AUTH)
    moved = client.get("/api/v1/categories")
    assert moved.headers["X-Cache"] == "MISS" and moved.json == [{"category": "beta", "count": 2}]


def test_concurrent_http_misses_cause_one_database_read(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = EventCounter()
    redis_app = make_app(make_settings(redis_url=redis_server.url), events=events)
    client = redis_app.test_client()
    product = create(client)
    services = services_of(redis_app)
    # A generous fill wait: on 2 busy cores the leader's read may take longer than the default.
    repository = services.require_cache().repository
    monkeypatch.setattr(repository, "policy", replace(repository.policy, fill_wait_ms=3000))
    services.cache.backend.delete(services.cache.keys.product(product["id"]).entry)
    events.reset()
    start = threading.Barrier(16)
    statuses: list[int] = []

    def read() -> None:
        start.wait()
        statuses.append(redis_app.test_client().get(f"/api/v1/products/{product['id']}").status_code)

    threads = [threading.Thread(target=read) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert statuses == [200] * 16
    assert events.count("db_read", "product") == 1


@pytest.fixture
def fragile_app(private_redis: RedisServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    monkeypatch.setattr("jollyjet.app_factory.BREAKER_FAILURES", 2)
    settings = make_settings(
        redis_url=private_redis.url,
        breaker_cooldown_s=0.5,
        redis_timeout_ms=100,
        cache_fence_poll_s=0.1,  # a failed write answers after twice this (the fence's commit wait)
    )
    yield create_app(settings)


def test_redis_stopped_mid_test_reads_fall_back_and_writes_succeed(
    fragile_app: Flask, private_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = fragile_app.test_client()
    services = services_of(fragile_app)
    product = create(client, stock=3)
    assert client.get(f"/api/v1/products/{product['id']}").headers["X-Cache"] == "HIT"

    private_redis.stop()

    attempts = []
    record_failure = services.cache.breaker.record_failure
    monkeypatch.setattr(services.cache.breaker, "record_failure", lambda: (attempts.append(1), record_failure()))
    for _ in range(20):
        read = client.get(f"/api/v1/products/{product['id']}")
        assert read.status_code == 200 and read.headers["X-Cache"] == "BYPASS"
    assert services.cache.breaker.state is BreakerState.OPEN
    # Once open, the breaker keeps requests away from the dead Redis: only the calls
    # that opened it waited for a connection error, not one per request.
    assert len(attempts) == services.cache.breaker.failure_threshold
    monkeypatch.undo()

    listing = client.get("/api/v1/products")
    assert listing.status_code == 200 and listing.headers["X-Cache"] == "BYPASS"
    assert client.get("/api/v1/categories").status_code == 200
    assert client.get("/api/v1/products/count").json == {"count": 1}

    patched = client.patch(f"/api/v1/products/{product['id']}", json={"stock": 9}, headers=AUTH)
    assert patched.status_code == 200 and patched.json["version"] == 2
    created = client.post("/api/v1/products", json=product_payload(), headers=AUTH)
    assert created.status_code == 201
    pending = {r.product_id for r in CacheRepairRecord.objects(done_at=None)}
    assert pending == {product["id"], created.json["id"]}

    ready = client.get("/health/ready")
    assert ready.status_code == 200 and ready.json["redis"] == "down"

    private_redis.start()  # empty: the server kept no data
    time.sleep(0.6)  # breaker cool-down
    # Its failed write is not replayed yet: the cache is not trusted for it (nor for lists).
    fenced = client.get(f"/api/v1/products/{product['id']}")
    assert fenced.json["stock"] == 9 and fenced.headers["X-Cache"] == "BYPASS"
    assert client.get("/api/v1/products").headers["X-Cache"] == "BYPASS"
    cache = services.cache
    wait_until_settled(cache.backend, cache.keys.generation)
    report = repair_failed_writes(
        cache.repairs, cache.backend, cache.writer, services.mongo, batch=10, lease_ttl_ms=2000
    )
    assert report.rewritten == 2 and report.remaining == 0
    cache.repository.fence.refresh()  # what the background poll does within a second
    first = client.get(f"/api/v1/products/{product['id']}")
    assert first.json["stock"] == 9 and first.headers["X-Cache"] == "HIT"  # the replay wrote it
    assert services.cache.breaker.state is BreakerState.CLOSED
    assert client.get("/api/v1/products").headers["X-Cache"] == "MISS"


def test_redis_unreachable_from_the_start_still_serves(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support.redis_server import free_port

    monkeypatch.setattr("jollyjet.app_factory.BREAKER_FAILURES", 1)
    settings = make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    client = create_app(settings).test_client()
    product = create(client)
    read = client.get(f"/api/v1/products/{product['id']}")
    assert read.status_code == 200 and read.headers["X-Cache"] == "BYPASS"
    assert client.get("/api/v1/products").status_code == 200


def wait_until_settled(backend: CacheBackend, key: str) -> None:
    """A restarted server replaces the old one (a new cache epoch): nobody uses it for two polls."""
    deadline = time.monotonic() + 5
    while True:
        try:
            backend.get(key)
            return
        except CacheUnavailable:
            assert time.monotonic() < deadline, "the restarted Redis server never settled"
            time.sleep(0.05)
