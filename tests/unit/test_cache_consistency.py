"""The cache's consistency guards, each race driven step by step.

Setup: the real Mongo repository on mongomock, wrapped by SlowReadRepository (to
pause a reader after its database read), wrapped by the cached repository on
CacheBackend over fakeredis (the real Lua scripts; see the contract tests).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from jollyjet.cache.fence import CacheRepairRecord, RepairLog
from jollyjet.cache.keys import CacheKeys, TtlPolicy
from jollyjet.cache.store import CacheBackend, CacheError, VersionedEntry
from jollyjet.db import connect_mongo
from jollyjet.products.catalog import CachedProductRepository, CachePolicy
from jollyjet.products.record import CacheStatus, ProductQuery, parse
from jollyjet.products.repository import MongoProductRepository
from tests.conftest import make_settings
from tests.support.events import EventCounter
from tests.support.factories import product_values, record_read
from tests.support.fake_cache import FakeCacheBackend, write_entry
from tests.support.interleaving import Pause, SlowReadRepository, run_in_thread


@dataclass
class Stack:
    mongo: MongoProductRepository
    slow: SlowReadRepository
    cache: FakeCacheBackend
    repo: CachedProductRepository
    keys: CacheKeys
    events: EventCounter


def build_stack(
    cache: CacheBackend | None = None, fill_wait_ms: int = 2000, delay_s: float = 0.0, tombstone_ttl_s: int = 30
) -> Stack:
    connect_mongo(make_settings())
    mongo = MongoProductRepository()
    slow = SlowReadRepository(mongo, delay_s=delay_s)
    backend = cache or FakeCacheBackend()
    keys = CacheKeys("unit")
    events = EventCounter()
    policy = CachePolicy(
        product_ttl_s=600, list_ttl_s=60, tombstone_ttl_s=tombstone_ttl_s, lease_ttl_ms=5000, fill_wait_ms=fill_wait_ms
    )
    repo = CachedProductRepository(slow, backend, keys, TtlPolicy(0.1), policy, RepairLog(), events)  # type: ignore[arg-type]
    return Stack(mongo, slow, backend, repo, keys, events)  # type: ignore[arg-type]


@pytest.fixture
def stack() -> Iterator[Stack]:
    yield build_stack()


def values(sku: str = "SKU-1", **extra: object) -> dict[str, object]:
    return product_values(sku=sku, **extra)


def cached_version(stack: Stack, product_id: str) -> VersionedEntry | None:
    return stack.cache.get_versioned(stack.keys.product(product_id).entry)


# --- write-through ------------------------------------------------------------------------
def test_every_write_kind_goes_through_to_the_cache(stack: Stack) -> None:
    created = stack.repo.create(values())
    entry = cached_version(stack, created.id)
    assert entry is not None and entry.version == 1 and parse(entry.payload or b"") == created

    updated = stack.repo.update(created.id, {"stock": 7}, expected_version=1)
    entry = cached_version(stack, created.id)
    assert entry is not None and entry.version == 2 and parse(entry.payload or b"").stock == 7

    stack.repo.delete(created.id, expected_version=updated.version)
    entry = cached_version(stack, created.id)
    assert entry is not None and entry.is_tombstone
    read = stack.repo.get_body(created.id)
    assert read.value is None and read.source is CacheStatus.HIT  # served by the tombstone
    assert stack.slow.reads == 0  # not one database read for any of it


def test_reads_after_a_write_are_hits_with_the_new_state(stack: Stack) -> None:
    created = stack.repo.create(values())
    stack.repo.update(created.id, {"name": "Desk lamp"}, expected_version=None)
    read = record_read(stack.repo.get_body(created.id))
    assert read.source is CacheStatus.HIT and read.value is not None and read.value.name == "Desk lamp"


# --- race 1: concurrent updates reaching Redis out of order --------------------------------
class PausingBackend(FakeCacheBackend):
    """Lets the test hold one write-through (swap_versioned) call until later."""

    def __init__(self) -> None:
        super().__init__()
        self.hold_next_set: Pause | None = None

    def swap_versioned(
        self, key: str, lease_key: str, pending_key: str, payload: bytes, version: int, ttl_s: int, token: str
    ) -> tuple[bool, bytes | None]:
        pause, self.hold_next_set = self.hold_next_set, None
        if pause is not None:
            pause.wait_here()
        return super().swap_versioned(key, lease_key, pending_key, payload, version, ttl_s, token)


def test_out_of_order_write_through_never_moves_the_cache_backwards() -> None:
    backend = PausingBackend()
    stack = build_stack(cache=backend)
    created = stack.repo.create(values())

    held = Pause()
    backend.hold_next_set = held
    first, _ = run_in_thread(lambda: stack.repo.update(created.id, {"stock": 1}, None))  # commits v2, then held
    assert held.reached.wait(5)
    stack.repo.update(created.id, {"stock": 2}, None)  # commits v3 and caches it
    held.release.set()  # v2's cache write arrives last
    first.join(5)

    entry = cached_version(stack, created.id)
    assert entry is not None and entry.version == 3
    assert parse(entry.payload or b"").stock == 2
    assert stack.mongo.get(created.id).value.stock == 2  # type: ignore[union-attr]


# --- race 2: a slow reader filling an old value after the newer one was evicted -------------
def test_slow_fill_after_write_and_eviction_is_refused(stack: Stack) -> None:
    created = stack.repo.create(values())
    key = stack.keys.product(created.id).entry
    stack.cache.delete(key)  # start from a miss

    pause = Pause()
    stack.slow.pause_after_get = pause
    reader, result = run_in_thread(lambda: record_read(stack.repo.get_body(created.id)))
    assert pause.reached.wait(5)  # the reader holds the lease and has read version 1

    stack.repo.update(created.id, {"stock": 42}, None)  # v2: written through, lease revoked
    stack.cache.delete(key)  # v2 evicted (memory pressure) or expired
    pause.release.set()
    reader.join(5)

    assert result[0].value.version == 1  # the reader itself was concurrent with the write
    assert cached_version(stack, created.id) is None  # but its fill did not land
    assert stack.events.count("fill_rejected", "product") == 1
    after = record_read(stack.repo.get_body(created.id))
    assert after.source is CacheStatus.MISS and after.value is not None and after.value.version == 2
    assert cached_version(stack, created.id).version == 2  # type: ignore[union-attr]


def test_version_guard_alone_keeps_newer_value_when_not_evicted(stack: Stack) -> None:
    created = stack.repo.create(values())
    stack.cache.delete(stack.keys.product(created.id).entry)
    pause = Pause()
    stack.slow.pause_after_get = pause
    reader, _ = run_in_thread(lambda: stack.repo.get_body(created.id))
    assert pause.reached.wait(5)
    stack.repo.update(created.id, {"stock": 42}, None)
    pause.release.set()
    reader.join(5)
    assert cached_version(stack, created.id).version == 2  # type: ignore[union-attr]


# --- tombstones ------------------------------------------------------------------------------
def test_late_fill_cannot_resurrect_a_deleted_product(stack: Stack) -> None:
    created = stack.repo.create(values())
    stack.cache.delete(stack.keys.product(created.id).entry)
    pause = Pause()
    stack.slow.pause_after_get = pause
    reader, _ = run_in_thread(lambda: stack.repo.get_body(created.id))
    assert pause.reached.wait(5)  # read version 1 from the database
    stack.repo.delete(created.id, None)
    pause.release.set()
    reader.join(5)

    entry = cached_version(stack, created.id)
    assert entry is not None and entry.is_tombstone and entry.version == 2
    assert stack.repo.get_body(created.id).value is None


def test_tombstone_expires_and_the_product_stays_gone() -> None:
    # fakeredis expires keys on the wall clock: a 1 s tombstone TTL (the least EXPIRE takes), and wait it out.
    stack = build_stack(tombstone_ttl_s=1)
    created = stack.repo.create(values())
    stack.repo.delete(created.id, None)
    tombstone = cached_version(stack, created.id)
    assert tombstone is not None and tombstone.is_tombstone
    time.sleep(1.1)  # past the tombstone TTL
    assert cached_version(stack, created.id) is None
    read = stack.repo.get_body(created.id)
    assert read.value is None and read.source is CacheStatus.MISS


# --- lists and counts under generations --------------------------------------------------------
def test_lists_and_counts_are_invalidated_by_every_write_kind(stack: Stack) -> None:
    query = ProductQuery(category="home")
    assert stack.repo.list_bodies(query).source is CacheStatus.MISS
    assert stack.repo.list_bodies(query).source is CacheStatus.HIT
    assert stack.repo.count(query).value == 0
    assert stack.repo.count(query).source is CacheStatus.HIT

    created = stack.repo.create(values())
    page = stack.repo.list_bodies(query)
    assert page.source is CacheStatus.MISS and [parse(b).id for b in page.value.bodies] == [created.id]
    assert stack.repo.count(query).value == 1

    stack.repo.update(created.id, {"category": "garden"}, None)
    assert stack.repo.list_bodies(query).value.total == 0
    assert stack.repo.count(ProductQuery(category="garden")).value == 1

    stack.repo.delete(created.id, None)
    assert stack.repo.count(ProductQuery(category="garden")).value == 0


def test_list_fill_computed_under_an_old_generation_is_dropped(stack: Stack) -> None:
    query = ProductQuery()
    gate = Pause()
    original = stack.slow.list_page

    def paused_list(q: ProductQuery):  # type: ignore[no-untyped-def]
        result = original(q)
        gate.wait_here()
        return result

    stack.slow.list_page = paused_list  # type: ignore[method-assign]
    reader, _ = run_in_thread(lambda: stack.repo.list_bodies(query))
    assert gate.reached.wait(5)  # computed the (empty) page under generation g
    stack.repo.create(values())  # bumps to g + 1
    gate.release.set()
    reader.join(5)
    stack.slow.list_page = original  # type: ignore[method-assign]

    assert stack.events.count("fill_rejected", "list") == 1
    assert stack.repo.list_bodies(query).value.total == 1


# --- stampede protection -------------------------------------------------------------------------
def test_concurrent_misses_on_one_product_cause_one_database_read() -> None:
    stack = build_stack(delay_s=0.1)
    created = stack.repo.create(values())
    stack.cache.delete(stack.keys.product(created.id).entry)
    start = threading.Barrier(20)

    def read() -> object:
        start.wait()
        return record_read(stack.repo.get_body(created.id))

    threads = [run_in_thread(read) for _ in range(20)]
    for thread, _ in threads:
        thread.join(10)
    results = [out[0] for _, out in threads]
    assert all(r.value == created for r in results)
    assert stack.slow.reads == 1


def test_concurrent_misses_on_one_list_cause_one_database_query() -> None:
    stack = build_stack(delay_s=0.1)
    stack.repo.create(values())
    start = threading.Barrier(20)

    def read() -> object:
        start.wait()
        return stack.repo.list_bodies(ProductQuery())

    threads = [run_in_thread(read) for _ in range(20)]
    for thread, _ in threads:
        thread.join(10)
    assert all(out[0].value.total == 1 for _, out in threads)
    assert stack.slow.reads == 1


def test_waiters_fall_back_to_the_database_when_the_filler_is_too_slow() -> None:
    stack = build_stack(fill_wait_ms=20)
    created = stack.repo.create(values())
    stack.cache.delete(stack.keys.product(created.id).entry)
    pause = Pause()
    stack.slow.pause_after_get = pause
    leader, _ = run_in_thread(lambda: stack.repo.get_body(created.id))
    assert pause.reached.wait(5)
    follower = record_read(stack.repo.get_body(created.id))  # waits 20 ms, then reads the database itself
    assert follower.value == created and follower.source is CacheStatus.MISS
    pause.release.set()
    leader.join(5)
    assert stack.slow.reads == 2


# --- failures ---------------------------------------------------------------------------------------
class FailingBackend(FakeCacheBackend):
    """Every call raises CacheError, as when Redis is down."""

    def __getattribute__(self, name: str):  # type: ignore[no-untyped-def]
        attr = super().__getattribute__(name)
        if callable(attr) and not name.startswith("_"):

            def fail(*_: object, **__: object) -> None:
                raise CacheError("redis down")

            return fail
        return attr


def test_cache_failures_never_fail_reads_or_writes_and_are_recorded() -> None:
    stack = build_stack(cache=FailingBackend())
    created = stack.repo.create(values())
    updated = stack.repo.update(created.id, {"stock": 0}, None)
    read = record_read(stack.repo.get_body(created.id))
    assert read.value == updated and read.source is CacheStatus.BYPASS
    assert stack.repo.list_bodies(ProductQuery()).source is CacheStatus.BYPASS
    assert stack.repo.count(ProductQuery()).value == 1
    stack.repo.delete(created.id, None)
    records = list(CacheRepairRecord.objects(product_id=created.id))
    assert [r.reason.split(":")[0] for r in records] == ["write", "write", "delete"]
    assert stack.events.count("write_failure") == 3


def test_undecodable_cache_entry_is_treated_as_a_miss(stack: Stack) -> None:
    created = stack.repo.create(values())
    pk = stack.keys.product(created.id)
    write_entry(stack.cache, pk, b"{not json", 1, 60)
    read = record_read(stack.repo.get_body(created.id))
    assert read.value == created and read.source is CacheStatus.MISS


def test_malformed_ids_never_reach_the_cache_or_database(stack: Stack) -> None:
    for bad in ("xyz", "0123456789ABCDEF01234567", "*", "../../etc", "0" * 25):
        assert stack.repo.get_body(bad).value is None
    assert stack.slow.reads == 0
