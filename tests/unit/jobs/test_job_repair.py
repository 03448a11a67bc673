"""Replaying cache writes that failed after their database write (Redis was down).

The app runs on an OutageBackend: CacheBackend on fakeredis with a switch that
makes its calls raise CacheError, as they do when Redis is unreachable.
"""

from __future__ import annotations

import pytest
from flask import Flask

from jollyjet.cache.fence import CacheRepairRecord
from jollyjet.cache.store import CacheError, VersionedEntry
from jollyjet.extensions import Services
from jollyjet.jobs.repair import RepairReport, repair_failed_writes
from jollyjet.products.catalog import CachePolicy
from jollyjet.products.record import CacheStatus, ProductQuery, ProductRecord, parse
from jollyjet.products.repository import MongoProductRepository
from tests.support.job_stack import OutageBackend, RepositoryWithHook, product_values


@pytest.fixture
def backend() -> OutageBackend:
    return OutageBackend()


def repair(
    services: Services,
    database: MongoProductRepository | None = None,
    batch: int = 500,
) -> RepairReport:
    assert services.cache is not None
    return repair_failed_writes(
        services.cache.repairs,
        services.cache.backend,
        services.cache.writer,
        database or services.mongo,
        batch,
        lease_ttl_ms=CachePolicy().lease_ttl_ms,
    )


def create(services: Services) -> ProductRecord:
    return services.products.create(product_values())


def entry_of(services: Services, product_id: str) -> VersionedEntry | None:
    assert services.cache is not None
    return services.cache.backend.get_versioned(services.cache.keys.product(product_id).entry)


def test_writes_that_failed_during_an_outage_are_replayed(
    app: Flask, services: Services, backend: OutageBackend
) -> None:
    updated, deleted = create(services), create(services)
    assert services.products.list_bodies(ProductQuery()).source is CacheStatus.MISS  # cached: both products

    backend.failing = {"*"}  # Redis goes down; every write still commits to MongoDB
    services.products.update(updated.id, {"stock": 1}, None)
    services.products.update(updated.id, {"stock": 2}, None)
    services.products.delete(deleted.id, None)
    created = create(services)
    assert services.cache.repairs.pending_count() == 4
    backend.failing = set()  # Redis is back, with the data it had before

    stale = services.products.list_bodies(ProductQuery())
    assert stale.source is CacheStatus.HIT and stale.value.total == 2  # what the repair job is for

    report = repair(services)

    assert report.as_dict() | {"duration_s": 0} == {
        "records": 4,
        "products": 3,
        "rewritten": 2,
        "tombstoned": 1,
        "unchanged": 0,
        "deferred": 0,
        "lists_invalidated": True,
        "remaining": 0,
        "duration_s": 0,
    }
    for product in (updated, created):
        entry = entry_of(services, product.id)
        assert entry is not None and parse(entry.payload or b"") == services.mongo.get(product.id).value
    assert entry_of(services, deleted.id) == VersionedEntry(deleted.version + 1, None)
    page = services.products.list_bodies(ProductQuery())
    assert page.source is CacheStatus.MISS and {parse(b).id for b in page.value.bodies} == {updated.id, created.id}
    assert all(r.done_at is not None for r in CacheRepairRecord.objects)

    client = app.test_client()
    response = client.get(f"/api/v1/products/{updated.id}")
    assert response.headers["X-Cache"] == "HIT" and response.get_json()["stock"] == 2
    assert client.get(f"/api/v1/products/{deleted.id}").status_code == 404

    again = repair(services)  # nothing pending: no work, no invalidation
    assert (again.records, again.remaining, again.lists_invalidated) == (0, 0, False)


def test_a_batch_bounds_one_run_and_the_rest_is_reported_remaining(services: Services, backend: OutageBackend) -> None:
    backend.failing = {"*"}
    products = [create(services) for _ in range(3)]
    backend.failing = set()

    first = repair(services, batch=2)
    assert (first.records, first.rewritten, first.remaining) == (2, 2, 1)
    second = repair(services, batch=2)
    assert (second.records, second.rewritten, second.remaining) == (1, 1, 0)
    assert all(entry_of(services, p.id) is not None for p in products)


def test_a_failing_cache_leaves_records_pending_with_attempts_counted(
    services: Services, backend: OutageBackend
) -> None:
    product, gone = create(services), create(services)
    backend.failing = {"*"}
    services.products.update(product.id, {"stock": 9}, None)
    services.products.delete(gone.id, None)
    backend.failing = set()
    generation = backend.get_generation(services.cache.keys.generation)

    backend.failing = {"fill_versioned"}  # reads work, the rewrite fails midway
    with pytest.raises(CacheError):
        repair(services)
    backend.failing = {"*"}  # still down
    with pytest.raises(CacheError):
        repair(services)
    backend.failing = set()

    records = list(CacheRepairRecord.objects)
    assert [(r.attempts, r.done_at) for r in records] == [(2, None), (2, None)]
    assert services.cache.repairs.pending_count() == 2
    assert backend.get_generation(services.cache.keys.generation) == generation  # not invalidated without a repair
    assert entry_of(services, product.id).version == 1  # type: ignore[union-attr]

    report = repair(services)

    assert (report.rewritten, report.tombstoned, report.remaining) == (1, 1, 0)
    assert entry_of(services, product.id).version == 2  # type: ignore[union-attr]
    assert all(r.done_at is not None and r.attempts == 2 for r in CacheRepairRecord.objects)


def test_a_write_newer_than_the_repairs_database_read_wins(services: Services, backend: OutageBackend) -> None:
    product = create(services)
    backend.failing = {"*"}
    services.products.update(product.id, {"stock": 5}, None)  # v2, not cached
    backend.failing = set()
    racing = RepositoryWithHook(services.mongo)
    # The repair has read v2; a client write commits and caches v3 before its cache write.
    racing.after_get_many = lambda: services.products.update(product.id, {"stock": 6}, None)

    report = repair(services, database=racing)

    assert (report.rewritten, report.unchanged, report.remaining) == (0, 1, 0)
    entry = entry_of(services, product.id)
    assert entry is not None and entry.version == 3 and parse(entry.payload or b"").stock == 6


def test_records_stay_pending_when_the_list_and_category_invalidation_fails(
    services: Services, backend: OutageBackend
) -> None:
    product = create(services)
    backend.failing = {"*"}
    services.products.update(product.id, {"category": "moved"}, None)  # cached lists and categories now differ
    backend.failing = {"finish_catalog_write"}  # the rewrite lands, the invalidation of every list fails

    with pytest.raises(CacheError):
        repair(services)

    assert entry_of(services, product.id).version == 2  # type: ignore[union-attr]
    assert [(r.attempts, r.done_at) for r in CacheRepairRecord.objects] == [(1, None)]
    backend.failing = set()
    assert repair(services).remaining == 0
