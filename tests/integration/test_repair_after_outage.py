"""Redis goes down, writes go on, Redis comes back with its old data: the repair job makes it right.

The redis-server saves an RDB snapshot when stopped, so the restart serves the
values from before the outage — the stale data a real Redis restart (or failover
to a lagging replica) brings back. Writes made meanwhile were recorded in MongoDB
(CacheRepairRecord); the repair job, run by a real worker, replays them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from celery.contrib.testing.worker import start_worker
from flask.testing import FlaskClient

from jollyjet import create_app
from jollyjet.cache.fence import BreakerState, CacheRepairRecord
from jollyjet.extensions import services_of
from jollyjet.jobs import FlaskCelery
from tests.conftest import make_settings
from tests.support.factories import product_payload
from tests.support.jobs import AUTH, run_job
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.integration


@pytest.fixture
def persistent_redis() -> Iterator[RedisServer]:
    server = RedisServer(persist=True)
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def outage_celery(persistent_redis: RedisServer, monkeypatch: pytest.MonkeyPatch) -> FlaskCelery:
    monkeypatch.setattr("jollyjet.app_factory.BREAKER_FAILURES", 1)
    settings = make_settings(
        redis_url=persistent_redis.url,
        celery_queue=f"outage-{uuid.uuid4().hex[:12]}",
        redis_timeout_ms=100,
        breaker_cooldown_s=0.3,
        jobs_off_raw="warm",
    )
    return create_app(settings).extensions["celery"]


def create(client: FlaskClient, **fields: Any) -> dict[str, Any]:
    response = client.post("/api/v1/products", json=product_payload(**fields), headers=AUTH)
    assert response.status_code == 201, response.json
    return response.json  # type: ignore[no-any-return]


def wait_until_breaker_lets_a_trial_through(celery: FlaskCelery) -> None:
    breaker = services_of(celery.flask_app).cache.breaker
    deadline = time.monotonic() + 5
    while breaker.state is BreakerState.OPEN and time.monotonic() < deadline:
        time.sleep(0.05)
    assert breaker.state is not BreakerState.OPEN


def test_repair_after_a_redis_restart_with_old_data_serves_no_stale_value(
    outage_celery: FlaskCelery, persistent_redis: RedisServer
) -> None:
    app = outage_celery.flask_app
    client = app.test_client()
    keys = services_of(app).cache.keys
    raw = persistent_redis.client()
    updated, deleted, untouched = (create(client, category="outage", stock=1)["id"] for _ in range(3))
    for product_id in (updated, deleted, untouched):
        assert client.get(f"/api/v1/products/{product_id}").headers["X-Cache"] == "HIT"
    listing_url = "/api/v1/products?category=outage"
    assert client.get(listing_url).status_code == 200
    assert client.get(listing_url).headers["X-Cache"] == "HIT"
    assert client.get("/api/v1/products/count?category=outage").json == {"count": 3}
    assert client.get("/api/v1/categories").json == [{"category": "outage", "count": 3}]
    generation_before = raw.get(keys.generation)

    persistent_redis.stop()  # saves the snapshot: every value above comes back on restart

    patched = client.patch(f"/api/v1/products/{updated}", json={"stock": 42}, headers=AUTH)
    assert patched.status_code == 200 and patched.json["version"] == 2
    assert client.delete(f"/api/v1/products/{deleted}", headers=AUTH).status_code == 204
    late = create(client, category="late")["id"]
    pending = CacheRepairRecord.objects(done_at=None)
    assert sorted(r.product_id for r in pending) == sorted([updated, deleted, late])

    persistent_redis.start()

    # The setup works: Redis holds its pre-outage state again (the service has not connected yet).
    assert raw.hget(keys.product(updated).entry, "v") == b"1"
    assert orjson.loads(raw.hget(keys.product(updated).entry, "d"))["stock"] == 1
    assert raw.hget(keys.product(deleted).entry, "d") is not None
    assert raw.get(keys.generation) == generation_before

    wait_until_breaker_lets_a_trial_through(outage_celery)
    with start_worker(outage_celery, pool="solo", perform_ping_check=False):
        task = run_job(client, "repair")

    result = task["result"]
    assert result["records"] == 3 and result["products"] == 3
    # The restarted server was a new epoch: its old entries were deleted before any use,
    # so there is no old entry of the deleted product left to tombstone.
    assert result["rewritten"] == 2 and result["tombstoned"] == 0 and result["unchanged"] == 1
    assert result["lists_invalidated"] is True and result["remaining"] == 0
    assert CacheRepairRecord.objects(done_at=None).count() == 0
    assert CacheRepairRecord.objects(done_at__ne=None).count() == 3

    database = services_of(app).mongo
    # The fence lifts once a poll has seen the records done; its background poll runs once a
    # second, so take that poll now rather than race it.
    fence = services_of(app).require_cache().repository.fence
    assert fence is not None
    fence.refresh()
    fresh = client.get(f"/api/v1/products/{updated}")
    assert fresh.status_code == 200 and fresh.json["stock"] == 42 and fresh.json["version"] == 2
    assert fresh.headers["X-Cache"] == "HIT"  # served from the repaired entry, not the old one
    assert database.get(updated).value.stock == 42
    assert client.get(f"/api/v1/products/{deleted}").status_code == 404
    assert client.get(f"/api/v1/products/{untouched}").json["stock"] == 1
    assert client.get(f"/api/v1/products/{late}").json["category"] == "late"

    listing = client.get(listing_url)
    assert listing.headers["X-Cache"] == "MISS"  # the restored list page is unreachable now
    assert {p["id"]: p["stock"] for p in listing.json} == {updated: 42, untouched: 1}
    assert client.get("/api/v1/products/count?category=outage").json == {"count": 2}
    categories = client.get("/api/v1/categories").json
    assert sorted(categories, key=lambda c: c["category"]) == [
        {"category": "late", "count": 1},
        {"category": "outage", "count": 2},
    ]
