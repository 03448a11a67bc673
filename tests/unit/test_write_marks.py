"""Writes in flight (scripts.MARK_PRODUCT_WRITE / MARK_CATALOG_WRITE) and cached absence, on the real Lua.

Run on redis-py over fakeredis and over a real redis-server. What they promise:
- a marked product's entry is in doubt (never served) and no fill lands for it until the
  write's own cache update finishes the mark, or the mark lapses;
- a write whose mark lapsed lands nothing and drops what is cached at its version or older;
- a catalog mark that lapses moves the global list generation forward at the next list read;
- unknown ids are cached as absent, and a create always replaces that.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import fakeredis
import pytest

from jollyjet.cache.fence import CircuitBreaker
from jollyjet.cache.keys import CacheKeys, ProductKeys
from jollyjet.cache.store import CacheBackend
from tests.support.redis_server import RedisServer

PID = "0123456789abcdef01234567"
TTL_S = 60


@pytest.fixture(params=["fakeredis", pytest.param("redis", marks=pytest.mark.integration)])
def backend(request: pytest.FixtureRequest) -> Iterator[CacheBackend]:
    breaker = CircuitBreaker(failure_threshold=3, cooldown_s=1)
    if request.param == "fakeredis":
        yield CacheBackend(fakeredis.FakeRedis(server=fakeredis.FakeServer()), breaker)
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        yield CacheBackend(server.client(), breaker)


@pytest.fixture
def keys() -> CacheKeys:
    return CacheKeys(f"m{uuid.uuid4().hex[:10]}")


def _fill(backend: CacheBackend, product: ProductKeys, payload: bytes, version: int) -> bool:
    token = backend.acquire_lock(product.lease, 2000)
    assert token is not None
    return backend.fill_versioned(product.entry, product.lease, product.pending, token, payload, version, TTL_S)


def _read_generations(backend: CacheBackend, keys: CacheKeys) -> list[int]:
    generations, _ = backend.read_filtered(
        keys.generation,
        keys.filter_registry,
        keys.writes_in_flight,
        [],
        "{}",
        60_000,
        keys.query_result_prefix("list"),
        "h",
    )
    return generations


def test_a_marked_entry_is_in_doubt_and_no_fill_lands_until_the_write_finishes(
    backend: CacheBackend, keys: CacheKeys
) -> None:
    product = keys.product(PID)
    assert _fill(backend, product, b"v1", 1)
    lease = backend.acquire_lock(product.lease, 2000)  # a fill that read MongoDB before the write
    assert lease is not None
    backend.mark_write(product, keys.writes_in_flight, keys.generation, "w1", ttl_ms=10_000)
    entry = backend.get_versioned(product.entry)
    assert entry is not None and entry.pending and entry.version == 1
    # The earlier fill's lease was revoked; a new one is refused while the write is in flight.
    assert not backend.fill_versioned(product.entry, product.lease, product.pending, lease, b"v1", 1, TTL_S)
    assert not _fill(backend, product, b"v1", 1)
    landed, _before = backend.swap_versioned(product.entry, product.lease, product.pending, b"v2", 2, TTL_S, "w1")
    assert landed
    entry = backend.get_versioned(product.entry)
    assert entry is not None and not entry.pending and entry.payload == b"v2"


def test_a_second_write_in_flight_keeps_the_first_writes_entry_in_doubt(backend: CacheBackend, keys: CacheKeys) -> None:
    product = keys.product(PID)
    backend.mark_write(product, keys.writes_in_flight, keys.generation, "w1", ttl_ms=10_000)
    backend.mark_write(product, keys.writes_in_flight, keys.generation, "w2", ttl_ms=10_000)
    assert backend.swap_versioned(product.entry, product.lease, product.pending, b"v2", 2, TTL_S, "w1")[0]
    entry = backend.get_versioned(product.entry)
    assert entry is not None and entry.version == 2 and entry.pending
    assert backend.swap_versioned(product.entry, product.lease, product.pending, b"v3", 3, TTL_S, "w2")[0]
    entry = backend.get_versioned(product.entry)
    assert entry is not None and entry.version == 3 and not entry.pending


def test_a_write_whose_mark_lapsed_lands_nothing_and_drops_the_entry(backend: CacheBackend, keys: CacheKeys) -> None:
    product = keys.product(PID)
    assert _fill(backend, product, b"v1", 1)
    backend.mark_write(product, keys.writes_in_flight, keys.generation, "slow", ttl_ms=50)
    time.sleep(0.1)
    # After the lapse a fill lands again (it reads MongoDB after the write's deadline)...
    assert _fill(backend, product, b"v2", 2)
    # ...and the slow write's cache update, arriving after it, must not be trusted: dropped.
    landed, before = backend.swap_versioned(product.entry, product.lease, product.pending, b"v2", 2, TTL_S, "slow")
    assert (landed, before) == (False, None)
    assert backend.get_versioned(product.entry) is None


def test_a_late_write_through_cannot_resurrect_a_deleted_product(backend: CacheBackend, keys: CacheKeys) -> None:
    product = keys.product(PID)
    backend.mark_write(product, keys.writes_in_flight, keys.generation, "update", ttl_ms=50)
    time.sleep(0.1)  # the update's script reaches Redis late; meanwhile the product was deleted
    backend.mark_write(product, keys.writes_in_flight, keys.generation, "delete", ttl_ms=10_000)
    assert backend.tombstone(product.entry, product.lease, product.pending, 4, 1, "delete")
    time.sleep(1.1)  # the tombstone expired
    landed, _before = backend.swap_versioned(product.entry, product.lease, product.pending, b"v3", 3, TTL_S, "update")
    assert not landed
    assert backend.get_versioned(product.entry) is None


def test_a_catalog_mark_that_lapses_moves_the_global_generation_forward(backend: CacheBackend, keys: CacheKeys) -> None:
    first = _read_generations(backend, keys)
    assert _read_generations(backend, keys) == first
    backend.mark_write(None, keys.writes_in_flight, keys.generation, "died", ttl_ms=50)
    assert _read_generations(backend, keys) == first  # in flight: the state before it is still one MongoDB held
    time.sleep(0.1)
    after_lapse = _read_generations(backend, keys)
    assert after_lapse[0] > first[0]
    assert _read_generations(backend, keys) == after_lapse  # once


def test_a_finished_catalog_mark_moves_nothing_but_what_it_bumps(backend: CacheBackend, keys: CacheKeys) -> None:
    first = _read_generations(backend, keys)
    backend.mark_write(None, keys.writes_in_flight, keys.generation, "w", ttl_ms=50)
    assert backend.finish_catalog_write(keys.writes_in_flight, keys.generation, [], "w", bump_global=False) == 0
    time.sleep(0.1)
    assert _read_generations(backend, keys) == first


def test_the_writes_in_flight_vanishing_moves_the_global_generation_forward(
    backend: CacheBackend, keys: CacheKeys
) -> None:
    first = _read_generations(backend, keys)
    backend.mark_write(None, keys.writes_in_flight, keys.generation, "w", ttl_ms=10_000)
    backend.delete(keys.writes_in_flight)  # evicted, or purged by a new cache epoch, with its writes
    assert _read_generations(backend, keys)[0] > first[0]


def test_unknown_ids_are_cached_as_absent_and_a_create_replaces_that(backend: CacheBackend, keys: CacheKeys) -> None:
    product = keys.product(PID)
    token = backend.acquire_lock(product.lease, 2000)
    assert token is not None
    assert backend.fill_absent(product.entry, product.lease, product.pending, token, TTL_S)
    entry = backend.get_versioned(product.entry)
    assert entry is not None and entry.is_tombstone and entry.version == 0
    landed, _before = backend.swap_versioned(product.entry, product.lease, product.pending, b"v1", 1, TTL_S, "")
    assert landed
    entry = backend.get_versioned(product.entry)
    assert entry is not None and entry.payload == b"v1"


def test_absence_over_an_entry_in_doubt_is_a_tombstone_past_it(backend: CacheBackend, keys: CacheKeys) -> None:
    product = keys.product(PID)
    assert _fill(backend, product, b"v5", 5)
    # A delete whose MongoDB reply was lost: its mark lapses, MongoDB no longer has the product.
    backend.mark_write(product, keys.writes_in_flight, keys.generation, "delete", ttl_ms=50)
    time.sleep(0.1)
    token = backend.acquire_lock(product.lease, 2000)
    assert token is not None
    assert backend.fill_absent(product.entry, product.lease, product.pending, token, TTL_S)
    entry = backend.get_versioned(product.entry)
    assert entry is not None and entry.is_tombstone and entry.version == 6 and not entry.pending
    # A live entry is never replaced by absence (that needs a delete's tombstone).
    assert _fill(backend, keys.product("0123456789abcdef0123456a"), b"x", 1)
    other = keys.product("0123456789abcdef0123456a")
    token = backend.acquire_lock(other.lease, 2000)
    assert token is not None
    assert not backend.fill_absent(other.entry, other.lease, other.pending, token, TTL_S)
