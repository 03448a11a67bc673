"""Repair and audit rewrite entries under fill leases, like read misses: a late job never lands an older state.

A job reads a product from MongoDB and writes it to the cache later. Between the two, a
client write or delete may land and its entry vanish (evicted, or a tombstone expired):
the version guard then has nothing to compare with. The lease, taken before the job's
database read and revoked by every write-through and tombstone, refuses the job's write.
Runs on the memory backend and on redis-py over fakeredis (the Lua scripts).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from jollyjet.cache.store import VersionedEntry
from jollyjet.extensions import Services
from jollyjet.jobs.audit import CacheAudit
from jollyjet.jobs.repair import RepairReport, repair_failed_writes
from jollyjet.products.catalog import CachePolicy
from jollyjet.products.record import ProductRecord
from jollyjet.products.repository import MongoProductRepository
from jollyjet.settings import AuditMode
from tests.support.factories import record_read
from tests.support.job_stack import RepositoryWithHook, product_values


def repair(services: Services, database: MongoProductRepository | None = None) -> RepairReport:
    assert services.cache is not None
    return repair_failed_writes(
        services.cache.repairs,
        services.cache.backend,
        services.cache.writer,
        database or services.mongo,
        500,
        lease_ttl_ms=CachePolicy().lease_ttl_ms,
    )


def audit(services: Services, database: MongoProductRepository) -> dict[str, int]:
    assert services.cache is not None
    cache = services.cache
    job = CacheAudit(
        cache.backend, cache.keys, cache.writer, database, mode=AuditMode.FULL, lease_ttl_ms=CachePolicy().lease_ttl_ms
    )
    return job.run().repaired


def entry_of(services: Services, product_id: str) -> VersionedEntry | None:
    assert services.cache is not None
    return services.cache.backend.get_versioned(services.cache.keys.product(product_id).entry)


def expire_entry(services: Services, product_id: str) -> None:
    """The entry vanishes: evicted by maxmemory, or a tombstone whose TTL ran out."""
    assert services.cache is not None
    services.cache.backend.delete(services.cache.keys.product(product_id).entry)


def stale_in_cache(services: Services) -> ProductRecord:
    """A product cached at v1 whose v2 only MongoDB has (its cache write failed, recorded for repair)."""
    assert services.cache is not None
    product = services.products.create(product_values())
    services.mongo.update(product.id, {"stock": 7}, None)
    services.cache.repairs.record(product.id, "write: CacheError")
    return product


def on_read(racing: RepositoryWithHook, nth: int, hook: Callable[[], object]) -> None:
    """Run hook right after the nth get_many of racing (1: the next one)."""
    if nth == 1:
        racing.after_get_many = hook
    else:
        racing.after_get_many = lambda: on_read(racing, nth - 1, hook)


# --- repair ------------------------------------------------------------------------------------------
def test_repair_racing_an_eviction_does_not_land_the_older_version(services: Services) -> None:
    product = stale_in_cache(services)
    racing = RepositoryWithHook(services.mongo)

    def write_then_evict() -> None:  # after the repair read v2: a client writes v3, then v3 is evicted
        services.products.update(product.id, {"stock": 8}, None)
        expire_entry(services, product.id)

    on_read(racing, 1, write_then_evict)

    report = repair(services, database=racing)

    assert entry_of(services, product.id) is None  # not the v2 the repair read
    assert (report.rewritten, report.unchanged, report.remaining) == (0, 1, 0)  # nothing stale is cached: done
    read = record_read(services.products.get_body(product.id)).value
    assert read is not None and (read.version, read.stock) == (3, 8)


def test_repair_racing_a_delete_whose_tombstone_expired_does_not_recreate_it(services: Services) -> None:
    product = stale_in_cache(services)
    racing = RepositoryWithHook(services.mongo)

    def delete_then_expire() -> None:  # after the repair read v2: a client deletes it; the tombstone expires
        services.products.delete(product.id, None)
        expire_entry(services, product.id)

    on_read(racing, 1, delete_then_expire)

    report = repair(services, database=racing)

    assert entry_of(services, product.id) is None
    assert services.products.get_body(product.id).value is None
    assert (report.rewritten, report.remaining) == (0, 0)


def test_a_product_whose_lease_another_filler_holds_is_deferred_and_stays_pending(services: Services) -> None:
    assert services.cache is not None
    cache = services.cache
    product, other = stale_in_cache(services), stale_in_cache(services)
    lease = cache.keys.product(product.id).lease
    token = cache.backend.acquire_lock(lease, 60_000)  # a read miss is filling it
    assert token is not None

    report = repair(services)

    # One record replayed, the other deferred (still pending).
    assert (report.records, report.rewritten, report.deferred, report.remaining) == (1, 1, 1, 1)
    assert entry_of(services, product.id).version == 1  # type: ignore[union-attr]  # untouched
    assert entry_of(services, other.id).version == 2  # type: ignore[union-attr]
    assert cache.repairs.pending_product_ids(10) == [product.id]

    cache.backend.release_lock(lease, token)
    again = repair(services)
    assert (again.rewritten, again.remaining) == (1, 0)
    assert entry_of(services, product.id).version == 2  # type: ignore[union-attr]


def test_a_run_that_defers_everything_invalidates_nothing(services: Services) -> None:
    assert services.cache is not None
    product = stale_in_cache(services)
    assert services.cache.backend.acquire_lock(services.cache.keys.product(product.id).lease, 60_000)
    generation = services.cache.backend.get_generation(services.cache.keys.generation)

    report = repair(services)

    assert (report.deferred, report.lists_invalidated, report.remaining) == (1, False, 1)
    assert services.cache.backend.get_generation(services.cache.keys.generation) == generation


# --- audit -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("read", [1, 2], ids=["during-the-audit-read", "during-the-leased-read"])
def test_audit_racing_a_delete_whose_tombstone_expired_does_not_recreate_it(services: Services, read: int) -> None:
    product = services.products.create(product_values())
    services.mongo.update(product.id, {"stock": 7}, None)  # stale_version: cache v1, database v2
    racing = RepositoryWithHook(services.mongo)

    def delete_then_expire() -> None:
        services.products.delete(product.id, None)
        expire_entry(services, product.id)

    on_read(racing, read, delete_then_expire)

    repaired = audit(services, racing)

    assert repaired["stale_version"] == 0
    assert entry_of(services, product.id) is None
    assert services.products.get_body(product.id).value is None


def test_audit_racing_an_eviction_does_not_land_the_older_version(services: Services) -> None:
    product = services.products.create(product_values())
    services.mongo.update(product.id, {"stock": 7}, None)  # stale_version: cache v1, database v2
    racing = RepositoryWithHook(services.mongo)

    def write_then_evict() -> None:
        services.products.update(product.id, {"stock": 8}, None)
        expire_entry(services, product.id)

    on_read(racing, 1, write_then_evict)

    audit(services, racing)

    entry = entry_of(services, product.id)
    assert entry is None or entry.version == 3
    read = record_read(services.products.get_body(product.id)).value
    assert read is not None and (read.version, read.stock) == (3, 8)


def test_audit_leaves_a_product_whose_lease_another_filler_holds(services: Services) -> None:
    assert services.cache is not None
    product = services.products.create(product_values())
    services.mongo.update(product.id, {"stock": 7}, None)
    assert services.cache.backend.acquire_lock(services.cache.keys.product(product.id).lease, 60_000)

    repaired = audit(services, services.mongo)

    assert repaired["stale_version"] == 0  # not this round: the filler writes what it read, guarded
    assert entry_of(services, product.id).version == 1  # type: ignore[union-attr]
