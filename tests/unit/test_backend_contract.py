"""One contract, two servers: CacheBackend on fakeredis (the unit tests' cache) and on a real redis-server.

The cached repository relies on these semantics (version guard, leases,
tombstones, generations, locks); the unit tests run on fakeredis, so it must give
the same answers as Redis.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from jollyjet.cache.fence import CircuitBreaker
from jollyjet.cache.keys import CacheKeys, query_hash
from jollyjet.cache.store import CacheBackend, VersionedEntry
from tests.support.fake_cache import FakeCacheBackend, write_entry
from tests.support.redis_server import RedisServer

PID = "0123456789abcdef01234567"


@pytest.fixture(params=["fakeredis", pytest.param("redis", marks=pytest.mark.integration)])
def backend(request: pytest.FixtureRequest) -> Iterator[CacheBackend]:
    if request.param == "fakeredis":
        yield FakeCacheBackend()
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        client = server.client()
        yield CacheBackend(client, CircuitBreaker(failure_threshold=3, cooldown_s=1))


@pytest.fixture
def keys() -> CacheKeys:
    return CacheKeys(f"c{uuid.uuid4().hex[:10]}")


def test_plain_get_and_delete(backend: CacheBackend, keys: CacheKeys) -> None:
    key = f"{keys.root}:plain"
    assert backend.get(key) is None and not backend.client.exists(key)
    backend.client.set(key, b"value", ex=60)
    assert backend.get(key) == b"value" and backend.client.exists(key)
    ttl = backend.client.ttl(key)
    assert ttl is not None and 0 < ttl <= 60
    assert backend.delete(key, f"{keys.root}:absent") == 1
    assert backend.get(key) is None and backend.client.ttl(key) == -2


def test_scan_finds_only_matching_keys_in_batches(backend: CacheBackend, keys: CacheKeys) -> None:
    for i in range(25):
        backend.client.set(f"{keys.root}:scan:{i}", b"x", ex=60)
    backend.client.set(f"{keys.root}:other", b"x", ex=60)
    found = [k for batch in backend.scan(f"{keys.root}:scan:*", batch_size=10) for k in batch]
    assert sorted(found) == sorted(f"{keys.root}:scan:{i}" for i in range(25))


def test_version_guard_refuses_older_versions(backend: CacheBackend, keys: CacheKeys) -> None:
    pk = keys.product(PID)
    assert write_entry(backend, pk, b"v3", 3, 60)
    assert not write_entry(backend, pk, b"v2", 2, 60)
    assert backend.get_versioned(pk.entry) == VersionedEntry(3, b"v3")
    # The same version may be rewritten (a repair of content drift), a newer one always.
    assert write_entry(backend, pk, b"v3-fixed", 3, 60)
    assert write_entry(backend, pk, b"v4", 4, 60)
    assert backend.get_versioned(pk.entry) == VersionedEntry(4, b"v4")


def test_fill_lands_only_with_a_live_lease(backend: CacheBackend, keys: CacheKeys) -> None:
    pk = keys.product(PID)
    token = backend.acquire_lock(pk.lease, 5000)
    assert token is not None
    assert backend.acquire_lock(pk.lease, 5000) is None  # one filler at a time
    assert not backend.fill_versioned(pk.entry, pk.lease, pk.pending, "not-the-token", b"x", 1, 60)
    assert backend.fill_versioned(pk.entry, pk.lease, pk.pending, token, b"v1", 1, 60)
    assert backend.get_versioned(pk.entry) == VersionedEntry(1, b"v1")
    # The lease is consumed by the fill: the same token cannot fill twice.
    assert not backend.fill_versioned(pk.entry, pk.lease, pk.pending, token, b"v1", 1, 60)


def test_write_revokes_outstanding_leases(backend: CacheBackend, keys: CacheKeys) -> None:
    pk = keys.product(PID)
    token = backend.acquire_lock(pk.lease, 5000)
    assert token is not None
    write_entry(backend, pk, b"v2", 2, 60)
    backend.delete(pk.entry)  # the newer value is evicted or expires
    # The slow reader that read version 1 before the write must not resurrect it.
    assert not backend.fill_versioned(pk.entry, pk.lease, pk.pending, token, b"v1", 1, 60)
    assert backend.get_versioned(pk.entry) is None


def test_fill_never_replaces_a_newer_entry(backend: CacheBackend, keys: CacheKeys) -> None:
    pk = keys.product(PID)
    write_entry(backend, pk, b"v5", 5, 60)
    token = backend.acquire_lock(pk.lease, 5000)
    assert token is not None
    assert not backend.fill_versioned(pk.entry, pk.lease, pk.pending, token, b"v4", 4, 60)
    assert backend.get_versioned(pk.entry) == VersionedEntry(5, b"v5")


def test_tombstone_blocks_late_fills_and_expires(backend: CacheBackend, keys: CacheKeys) -> None:
    pk = keys.product(PID)
    token = backend.acquire_lock(pk.lease, 5000)
    assert token is not None
    assert backend.tombstone(pk.entry, pk.lease, pk.pending, 4, ttl_s=30)  # deleted at version 3
    entry = backend.get_versioned(pk.entry)
    assert entry is not None and entry.is_tombstone and entry.version == 4
    assert not backend.fill_versioned(pk.entry, pk.lease, pk.pending, token, b"v3", 3, 60)
    assert not write_entry(backend, pk, b"v3", 3, 60)
    ttl = backend.client.ttl(pk.entry)
    assert ttl is not None and 0 < ttl <= 30


def test_get_versioned_many(backend: CacheBackend, keys: CacheKeys) -> None:
    a, b = keys.product("a" * 24), keys.product("b" * 24)
    write_entry(backend, a, b"A", 1, 60)
    backend.tombstone(b.entry, b.lease, b.pending, 2, 60)
    got = backend.get_versioned_many([a.entry, b.entry, keys.product("c" * 24).entry])
    assert got == [VersionedEntry(1, b"A"), VersionedEntry(2, None), None]


def test_generations_start_high_and_increase(backend: CacheBackend, keys: CacheKeys) -> None:
    # The set of writes in flight exists first (created missing, it moves the generation forward itself).
    backend.finish_catalog_write(keys.writes_in_flight, keys.generation, (), "", bump_global=False)
    first = backend.get_generation(keys.generation)
    assert first > 10**15  # seeded from the clock in microseconds
    assert backend.get_generation(keys.generation) == first
    assert backend.finish_catalog_write(keys.writes_in_flight, keys.generation, (), "", bump_global=True) == 1
    assert backend.get_generation(keys.generation) == first + 1
    backend.delete(keys.generation)  # lost (evicted, flushed): restarts above every old value
    assert backend.get_generation(keys.generation) > first + 1


def test_a_filtered_result_is_read_with_its_generations_in_one_call(backend: CacheBackend, keys: CacheKeys) -> None:
    """read_filtered returns the generations and the result stored under them; a bump hides it."""
    filters = {"category": "audio"}
    filter_keys = [keys.filter_generation(filters, "members")]
    member, ms = '{"category":"audio"}', 60_000
    prefix, digest = keys.query_result_prefix("count"), query_hash(filters)

    def read() -> tuple[list[int], bytes | None]:
        return backend.read_filtered(
            keys.generation, keys.filter_registry, keys.writes_in_flight, filter_keys, member, ms, prefix, digest
        )

    generations, cached = read()
    assert cached is None and len(generations) == 2 and all(g > 10**15 for g in generations)
    key = keys.query_result("count", generations[0], filters, generations[1:])
    assert backend.fill_filtered(
        keys.generation, keys.filter_registry, key, filter_keys, generations, member, ms, b"7", 60
    )
    assert read() == (generations, b"7")  # the script built the same key name
    assert backend.finish_catalog_write(keys.writes_in_flight, keys.generation, filter_keys, "", False) == 1
    newer, cached = read()
    assert cached is None and newer == [generations[0], generations[1] + 1]
    # The registry vanishes (evicted, or an epoch's delete): the global generation moves on.
    backend.delete(keys.filter_registry)
    after, _ = read()
    assert after[0] > newer[0]


def test_a_before_image_is_returned_only_once_its_write_settled(backend: CacheBackend, keys: CacheKeys) -> None:
    product = keys.product("6b0000000000000000000001")
    assert backend.swap_versioned(product.entry, product.lease, product.pending, b"one", 1, 60, "") == (True, None)
    assert backend.swap_versioned(product.entry, product.lease, product.pending, b"two", 2, 60, "") == (
        True,
        None,
    )  # 1 never settled
    assert backend.mark_settled(product.entry, 2)
    assert backend.swap_versioned(product.entry, product.lease, product.pending, b"three", 3, 60, "") == (True, b"two")
    assert not backend.mark_settled(product.entry, 2)  # version 3 is cached now
    assert backend.get_versioned(product.entry) == VersionedEntry(3, b"three")
    # A fill says whether its version is settled (written long ago: products/catalog_writes.py).
    other = keys.product("6b0000000000000000000002")
    for settled, expected in ((False, None), (True, b"one")):
        backend.delete(other.entry)
        token = backend.acquire_lock(other.lease, 5000)
        assert token is not None and backend.fill_versioned(
            other.entry, other.lease, other.pending, token, b"one", 1, 60, settled
        )
        assert backend.swap_versioned(other.entry, other.lease, other.pending, b"two", 2, 60, "") == (True, expected)


def test_locks_are_exclusive_and_released_only_by_their_owner(backend: CacheBackend, keys: CacheKeys) -> None:
    lock = f"{keys.root}:lock"
    token = backend.acquire_lock(lock, 5000)
    assert token is not None
    assert backend.acquire_lock(lock, 5000) is None
    backend.release_lock(lock, "someone-else")
    assert backend.acquire_lock(lock, 5000) is None
    backend.release_lock(lock, token)
    assert backend.acquire_lock(lock, 5000) is not None


def test_ping(backend: CacheBackend) -> None:
    assert backend.ping()
