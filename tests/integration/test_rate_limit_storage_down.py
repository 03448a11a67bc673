"""The rate limits' storage (the cache's real Redis) dies: reads and limited requests never answer 500.

Each process goes on counting in its own memory, says so once in the log, and returns to
the shared counts when Redis answers again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tests.conftest import TOKEN, make_app, make_settings
from tests.support.factories import product_payload
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.integration
PRODUCTS = "/api/v1/products"
FALLBACK_LINE = "Rate limit storage unreachable - falling back to in-memory storage"


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own: it is stopped halfway through."""
    server = RedisServer()
    server.start()
    yield server
    server.close()


def test_limits_fall_back_to_memory_when_redis_dies(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("jollyjet.http.RATE_LIMIT_SEARCH", "3/minute")
    settings = make_settings(redis_url=own_redis.url)
    client = make_app(settings).test_client()
    created = client.post(PRODUCTS, json=product_payload(), headers={"Authorization": f"Bearer {TOKEN}"})
    product = f"{PRODUCTS}/{created.get_json()['id']}"

    assert [client.get(f"{PRODUCTS}?q=up{i}").status_code for i in range(2)] == [200, 200]
    # The counts are in the cache's Redis, under the service's key prefix.
    assert own_redis.client().keys(f"*{settings.cache_key_prefix}:rl*")

    own_redis.stop()
    with caplog.at_level(logging.WARNING):
        assert client.get(product).status_code == 200  # the cache bypasses to MongoDB
        # Counted in this process's memory from here: three more, then the limit again.
        statuses = [client.get(f"{PRODUCTS}?q=down{i}").status_code for i in range(4)]
        assert client.get(f"{PRODUCTS}/count?category=audio").status_code == 200
    assert statuses == [200, 200, 200, 429]
    assert [r.getMessage() for r in caplog.records].count(FALLBACK_LINE) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR and r.name == "flask-limiter"]
