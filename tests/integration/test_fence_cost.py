"""What the recovery fence costs MongoDB: no query on a hit, about one poll per process per second.

Counted with pymongo's command monitoring against nx-27017 (a real wire-protocol
server; mongomock sends no commands), on a real redis-server.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from jollyjet import create_app
from jollyjet.cache.fence import CacheRepairRecord
from jollyjet.extensions import services_of
from tests.conftest import TOKEN, make_settings
from tests.support.factories import product_payload
from tests.support.mongo_commands import COUNTER
from tests.support.mongo_server import MongoForTests, mongo_for_tests
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {TOKEN}"}
POLL_S = 0.5
WINDOW_S = 3.0


@pytest.fixture
def wire_mongo() -> Iterator[MongoForTests]:
    mongo = mongo_for_tests()
    mongo.start()
    try:
        yield mongo
    finally:
        mongo.close()


def test_hits_cost_no_query_and_the_fence_polls_about_once_per_interval(
    wire_mongo: MongoForTests, private_redis: RedisServer
) -> None:
    settings = make_settings(mongodb_uri=wire_mongo.uri, redis_url=private_redis.url, cache_fence_poll_s=POLL_S)
    app = create_app(settings)
    client = app.test_client()
    product = client.post("/api/v1/products", json=product_payload(), headers=AUTH).json
    path = f"/api/v1/products/{product['id']}"
    assert client.get(path).headers["X-Cache"] == "HIT"

    fence = services_of(app).require_cache().repository.fence
    assert fence is not None
    polls_before = fence.queries
    COUNTER.counts.clear()
    COUNTER.on = True
    started, hits = time.monotonic(), 0
    while time.monotonic() - started < WINDOW_S:
        response = client.get(path)
        assert response.headers["X-Cache"] == "HIT"
        hits += 1
    elapsed = time.monotonic() - started
    COUNTER.on = False
    counts = dict(COUNTER.counts)
    # This app's polls (pymongo's events would also count the fences of apps that earlier tests built).
    polls = fence.queries - polls_before
    print(f"fence cost: {hits} hits in {elapsed:.1f} s, {polls} fence polls (every {POLL_S} s), commands {counts}")
    assert counts.get(("find", "products"), 0) == 0  # a hit never reads the store
    # and the only queries are the poll's: pending repairs and the current Redis server (epoch.py).
    # The command listener sees every app of this process: an earlier test's app may mark its
    # restarted Redis server settled meanwhile (one update of cache_epochs).
    assert set(counts) <= {("find", "cache_repairs"), ("find", "cache_epochs"), ("update", "cache_epochs")}
    assert 1 <= polls <= elapsed / POLL_S + 2

    # With a record pending for it, the same product is read from MongoDB on every request.
    with app.app_context():
        services_of(app).require_cache().repairs.record(product["id"], "planted")
    fence.refresh()
    assert client.get(path).headers["X-Cache"] == "BYPASS"
    assert CacheRepairRecord.objects(product_id=product["id"]).count() == 1
