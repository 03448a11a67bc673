"""Repair and audit racing an eviction or an expired tombstone, on a real redis-server.

tests/unit/jobs/test_job_leases.py runs these races on fakeredis (the Lua through lupa):
a job reads a batch from MongoDB, a client write or delete lands, its entry vanishes,
and the job's fill must not land the older version. Here the same scenarios run on a
real redis-server (its Lua, its PX leases), and once more where the entry really is
evicted: maxmemory with volatile-lru (the policy docs/operations.md recommends) and
someone else's keys pushing it over, until Redis itself drops the entry.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from jollyjet.extensions import Services, services_of
from tests.conftest import make_app, make_settings
from tests.support.factories import record_read
from tests.support.job_stack import RepositoryWithHook, product_values
from tests.support.redis_server import RedisServer
from tests.unit.jobs.test_job_leases import (
    audit,
    entry_of,
    on_read,
    repair,
    stale_in_cache,
    test_audit_racing_a_delete_whose_tombstone_expired_does_not_recreate_it,
    test_audit_racing_an_eviction_does_not_land_the_older_version,
    test_repair_racing_a_delete_whose_tombstone_expired_does_not_recreate_it,
    test_repair_racing_an_eviction_does_not_land_the_older_version,
)

pytestmark = pytest.mark.integration

# The fakeredis tests, collected here again with `services` on a real redis-server.
__all__ = [
    "test_audit_racing_a_delete_whose_tombstone_expired_does_not_recreate_it",
    "test_audit_racing_an_eviction_does_not_land_the_older_version",
    "test_repair_racing_a_delete_whose_tombstone_expired_does_not_recreate_it",
    "test_repair_racing_an_eviction_does_not_land_the_older_version",
]
BALLAST_KEYS = 20_000  # at most 80 MB of someone else's keys before the test gives up on an eviction


@pytest.fixture
def services(private_redis: RedisServer) -> Services:
    """The app on mongomock and a redis-server of this test's own (the eviction test sets its maxmemory)."""
    return services_of(make_app(make_settings(redis_url=private_redis.url)))


def evict_until_gone(server: RedisServer, key: str) -> int:
    """Push the server over a small maxmemory (volatile-lru) until Redis evicts `key`; the keys it evicted."""
    raw = server.client()
    raw.config_set("maxmemory-policy", "volatile-lru")
    raw.config_set("maxmemory", int(raw.info("memory")["used_memory"]) + 64 * 1024)
    try:
        for batch in range(0, BALLAST_KEYS, 64):
            if not raw.exists(key):
                return int(raw.info("stats")["evicted_keys"])
            with raw.pipeline(transaction=False) as pipe:
                for i in range(batch, batch + 64):
                    pipe.set(f"ballast:{i}", b"x" * 4096, ex=600)  # volatile, as the cache's keys are
                pipe.execute()
        raise AssertionError(f"{BALLAST_KEYS} ballast keys and Redis still holds {key}")
    finally:
        raw.config_set("maxmemory", 0)  # the job's fill runs without memory pressure: only the guard decides


@pytest.fixture
def evicting(private_redis: RedisServer) -> Iterator[RedisServer]:
    """The private server, its eviction settings back to the defaults afterwards."""
    yield private_redis
    private_redis.client().config_set("maxmemory-policy", "noeviction")


@pytest.mark.parametrize("job", ["repair", "audit"])
def test_a_job_racing_a_real_maxmemory_eviction_does_not_land_the_older_version(
    services: Services, evicting: RedisServer, job: str
) -> None:
    assert services.cache is not None
    if job == "repair":
        product = stale_in_cache(services)  # cache v1, MongoDB v2, a repair recorded
    else:
        product = services.products.create(product_values())
        services.mongo.update(product.id, {"stock": 7}, None)  # the audit's stale_version: cache v1, MongoDB v2
    racing = RepositoryWithHook(services.mongo)
    evicted: list[int] = []

    def write_then_evict() -> None:  # after the job read v2: a client writes v3, then Redis evicts its entry
        services.products.update(product.id, {"stock": 8}, None)
        assert entry_of(services, product.id).version == 3  # type: ignore[union-attr]
        evicted.append(evict_until_gone(evicting, services.cache.keys.product(product.id).entry))  # type: ignore[union-attr]

    # The repair reads once, under its leases; the audit reads to find drift, then again under
    # its leases: the race that matters is with the leased read.
    on_read(racing, 1 if job == "repair" else 2, write_then_evict)

    repair(services, database=racing) if job == "repair" else audit(services, racing)

    assert evicted and evicted[0] > 0  # the hook ran, and Redis evicted
    entry = entry_of(services, product.id)
    assert entry is None or entry.version == 3  # never the v2 the job read
    read = record_read(services.products.get_body(product.id)).value
    assert read is not None and (read.version, read.stock) == (3, 8)
