"""The consistency audit: each drift class planted, found and repaired; sampling, limits, history, races.

Runs on redis-py over fakeredis (the real Lua scripts), with the real Mongo
repository on mongomock.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from flask import Flask

from jollyjet.cache.store import CacheBackend, VersionedEntry
from jollyjet.extensions import Services
from jollyjet.jobs.audit import DRIFT_CLASSES, AuditRun, CacheAudit, latest_audit, prune_audits
from jollyjet.products.catalog import CachePolicy
from jollyjet.products.record import CacheStatus, ProductDocument, ProductQuery, ProductRecord, parse
from jollyjet.products.repository import MongoProductRepository
from jollyjet.settings import AuditMode
from tests.support.factories import record_read
from tests.support.fake_cache import write_entry
from tests.support.job_stack import (
    RepositoryWithHook,
    drop_ttl,
    plant_record,
    product_values,
)


def run_audit(
    services: Services,
    database: MongoProductRepository | None = None,
    rng: random.Random | None = None,
    **options: object,
) -> AuditRun:
    assert services.cache is not None
    values: dict[str, object] = {"mode": AuditMode.FULL, **options}
    audit = CacheAudit(
        services.cache.backend,
        services.cache.keys,
        services.cache.writer,
        database or services.mongo,
        rng=rng,
        **values,  # type: ignore[arg-type]
    )
    return audit.run()


def create(services: Services, **extra: object) -> ProductRecord:
    return services.products.create(product_values(**extra))


def entry_of(services: Services, product_id: str) -> VersionedEntry | None:
    assert services.cache is not None
    return services.cache.backend.get_versioned(services.cache.keys.product(product_id).entry)


def ttl_of(services: Services, product_id: str) -> int | None:
    assert services.cache is not None
    return services.cache.backend.client.ttl(services.cache.keys.product(product_id).entry)


def in_db(services: Services, product_id: str) -> ProductRecord:
    record = services.mongo.get(product_id).value
    assert record is not None
    return record


def no_drift() -> dict[str, int]:
    return dict.fromkeys(DRIFT_CLASSES, 0)


# --- every drift class ----------------------------------------------------------------------------
def test_every_drift_class_is_found_and_repaired_and_the_api_serves_the_database(
    app: Flask, services: Services, backend: CacheBackend
) -> None:
    stale, ahead, mismatch, deleted, garbled, no_ttl, long_ttl, tombstoned, fine = (
        create(services, name=f"Product {i}") for i in range(9)
    )
    # stale_version: the database moved on and the cache write was lost.
    services.mongo.update(stale.id, {"stock": 99}, None)
    # version_ahead: the cache claims a version the database never had (a restored database).
    plant_record(services, replace(ahead, version=5, name="From the future"))
    # content_mismatch: same version, other content (a hand-edited key).
    plant_record(services, replace(mismatch, name="Hand edited"))
    # deleted_in_db: the document is gone, the cache still serves it.
    ProductDocument.objects(id=deleted.id).delete()
    # undecodable bytes.
    keys = services.cache.keys.product(garbled.id)
    write_entry(backend, keys, b"{not json", garbled.version, 600)
    # wrong_ttl: none at all, longer than the policy allows, and a tombstone that never expires.
    drop_ttl(backend, services.cache.keys.product(no_ttl.id).entry)
    backend.expire(services.cache.keys.product(long_ttl.id).entry, 10 * services.settings.cache_product_ttl_s)
    services.products.delete(tombstoned.id, None)
    drop_ttl(backend, services.cache.keys.product(tombstoned.id).entry)
    generation = backend.get_generation(services.cache.keys.generation)

    run = run_audit(services)

    expected = {**no_drift(), **dict.fromkeys(DRIFT_CLASSES[:5], 1), "wrong_ttl": 3}
    assert run.drift == expected
    assert run.repaired == expected
    assert (run.keys_scanned, run.keys_checked, run.tombstones) == (9, 9, 1)
    assert run.as_dict()["drift_total"] == 8 and run.repair_enabled
    # Product drift was repaired: cached lists may hold it too, so they were invalidated.
    assert backend.get_generation(services.cache.keys.generation) == generation + 1

    for product in (stale, mismatch, no_ttl, long_ttl, fine):
        entry = entry_of(services, product.id)
        assert entry is not None and entry.payload is not None
        assert parse(entry.payload) == in_db(services, product.id)
        ttl = ttl_of(services, product.id)
        assert ttl is not None and 0 < ttl <= services.cache.writer.max_product_ttl()  # type: ignore[union-attr]
    assert entry_of(services, ahead.id) is None and entry_of(services, garbled.id) is None
    for product in (deleted, tombstoned):
        entry = entry_of(services, product.id)
        assert entry is not None and entry.is_tombstone
        ttl = ttl_of(services, product.id)
        assert ttl is not None and 0 < ttl <= CachePolicy().tombstone_ttl_s
    # The audit's tombstone is one version past the one it saw, like a delete's.
    assert entry_of(services, deleted.id) == VersionedEntry(deleted.version + 1, None)

    again = run_audit(services)
    assert again.drift == no_drift() and again.repaired == no_drift()
    assert (again.keys_checked, again.tombstones) == (7, 2)  # the two evicted entries are gone

    client = app.test_client()
    for product in (stale, ahead, mismatch, garbled, no_ttl, long_ttl, fine):
        current = in_db(services, product.id)
        response = client.get(f"/api/v1/products/{product.id}")
        assert response.status_code == 200
        body = response.get_json()
        assert (body["version"], body["name"], body["stock"]) == (current.version, current.name, current.stock)
    for product in (deleted, tombstoned):
        assert client.get(f"/api/v1/products/{product.id}").status_code == 404


def test_an_entry_can_show_two_classes_and_each_is_counted(services: Services, backend: CacheBackend) -> None:
    product = create(services)
    services.mongo.update(product.id, {"name": "Renamed"}, None)
    drop_ttl(backend, services.cache.keys.product(product.id).entry)

    run = run_audit(services)

    assert run.drift == {**no_drift(), "stale_version": 1, "wrong_ttl": 1}
    assert run.repaired == run.drift
    entry = entry_of(services, product.id)
    assert entry is not None and entry.version == 2 and parse(entry.payload or b"").name == "Renamed"
    assert (ttl_of(services, product.id) or 0) > 0


def test_without_repair_drift_is_only_reported(services: Services, backend: CacheBackend) -> None:
    stale, permanent = create(services), create(services)
    services.mongo.update(stale.id, {"stock": 0}, None)
    drop_ttl(backend, services.cache.keys.product(permanent.id).entry)
    generation = backend.get_generation(services.cache.keys.generation)

    run = run_audit(services, repair=False)

    assert run.drift == {**no_drift(), "stale_version": 1, "wrong_ttl": 1}
    assert run.repaired == no_drift() and not run.repair_enabled
    assert entry_of(services, stale.id).version == 1  # type: ignore[union-attr]
    assert ttl_of(services, permanent.id) == -1
    assert backend.get_generation(services.cache.keys.generation) == generation
    assert latest_audit() == run  # reported runs are stored too


# --- list invalidation -----------------------------------------------------------------------------
def test_repaired_product_drift_invalidates_cached_lists(services: Services) -> None:
    product = create(services)
    repository = services.products
    assert repository.list_bodies(ProductQuery()).source is CacheStatus.MISS
    assert repository.list_bodies(ProductQuery()).source is CacheStatus.HIT
    services.mongo.update(product.id, {"name": "Renamed"}, None)  # the cached page still says "Lamp"

    run_audit(services)

    page = repository.list_bodies(ProductQuery())
    assert page.source is CacheStatus.MISS and [parse(b).name for b in page.value.bodies] == ["Renamed"]


def test_ttl_only_drift_leaves_cached_lists_alone(services: Services, backend: CacheBackend) -> None:
    product = create(services)
    drop_ttl(backend, services.cache.keys.product(product.id).entry)
    generation = backend.get_generation(services.cache.keys.generation)

    run = run_audit(services)

    assert run.repaired["wrong_ttl"] == 1
    assert backend.get_generation(services.cache.keys.generation) == generation


# --- how much is checked ------------------------------------------------------------------------------
def test_sample_mode_checks_a_seeded_random_subset(services: Services) -> None:
    products = [create(services) for _ in range(20)]
    for product in products:
        services.mongo.update(product.id, {"stock": 0}, None)  # every entry is stale
    # One draw per product entry, in scan order: the same seed picks the same count.
    replay = random.Random(7)
    expected = sum(replay.random() < 0.3 for _ in products)
    assert 0 < expected < len(products)

    run = run_audit(services, mode=AuditMode.SAMPLE, sample_rate=0.3, rng=random.Random(7))

    assert run.mode == "sample" and run.keys_scanned == 20
    assert run.keys_checked == expected and run.drift["stale_version"] == expected
    versions = [entry_of(services, p.id).version for p in products]  # type: ignore[union-attr]
    assert versions.count(2) == expected and versions.count(1) == 20 - expected  # the rest was not touched


def test_max_keys_caps_the_number_of_entries_checked(services: Services) -> None:
    products = [create(services) for _ in range(10)]
    for product in products:
        services.mongo.update(product.id, {"stock": 0}, None)

    run = run_audit(services, max_keys=3, batch=2)

    assert run.keys_checked == 3 and run.drift["stale_version"] == 3 and run.repaired["stale_version"] == 3
    assert run.keys_scanned < 10  # it stopped scanning once the cap was reached
    versions = [entry_of(services, p.id).version for p in products]  # type: ignore[union-attr]
    assert versions.count(2) == 3


def test_lease_keys_are_not_audited(services: Services) -> None:
    product = create(services)
    assert services.cache is not None
    assert services.cache.backend.acquire_lock(services.cache.keys.product(product.id).lease, 5000) is not None

    run = run_audit(services)

    assert run.keys_scanned == 2 and run.keys_checked == 1 and run.drift == no_drift()


# --- history ------------------------------------------------------------------------------------------
def stored_run(finished_at: datetime) -> AuditRun:
    run = AuditRun(
        started_at=finished_at,
        finished_at=finished_at,
        duration_s=0.0,
        mode="full",
        keys_scanned=0,
        keys_checked=0,
        tombstones=0,
        drift=no_drift(),
        repaired=no_drift(),
        repair_enabled=True,
    )
    run.save()
    return run


def test_runs_are_stored_and_only_the_newest_history_kept(services: Services) -> None:
    now = datetime.now(UTC)
    older = [stored_run(now - timedelta(hours=h)) for h in (3, 2, 1)]

    run = run_audit(services, history=2)

    assert [r.id for r in AuditRun.objects.order_by("-finished_at")] == [run.id, older[-1].id]
    assert latest_audit() == run
    assert latest_audit().as_dict()["finished_at"].endswith("Z")  # type: ignore[union-attr]


def test_prune_keeps_exactly_that_many_when_runs_finish_in_the_same_millisecond(services: Services) -> None:
    # MongoDB keeps milliseconds: quick runs tie, and ties at the cutoff must not all survive.
    same = datetime.now(UTC) - timedelta(minutes=1)
    for _ in range(4):
        stored_run(same)

    assert prune_audits(2) == 2
    assert AuditRun.objects.count() == 2
    assert prune_audits(2) == 0


# --- races: an audit can only lose to a client write --------------------------------------------------
def on_second_read(racing: RepositoryWithHook, write: Callable[[], object]) -> None:
    """Run write right after the audit's second database read (the one under the leases)."""
    racing.after_get_many = lambda: setattr(racing, "after_get_many", write)


def test_audit_repair_does_not_overwrite_a_newer_write_that_landed_meanwhile(app: Flask, services: Services) -> None:
    product = create(services)
    plant_record(services, replace(product, name="Hand edited"))  # content drift at version 1
    racing = RepositoryWithHook(services.mongo)
    # The audit has read the cache (v1, drifted), then the database (v1) again under the
    # product's lease; then a client writes v2.
    on_second_read(racing, lambda: services.products.update(product.id, {"name": "Newer"}, None))

    run = run_audit(services, database=racing)

    assert run.drift["content_mismatch"] == 1
    assert run.repaired["content_mismatch"] == 0  # its v1 write was refused: the write took the lease
    entry = entry_of(services, product.id)
    assert entry is not None and entry.version == 2 and parse(entry.payload or b"").name == "Newer"
    body = app.test_client().get(f"/api/v1/products/{product.id}").get_json()
    assert (body["version"], body["name"]) == (2, "Newer")


def test_audit_repair_of_a_stale_entry_loses_to_a_concurrent_newer_write(services: Services) -> None:
    product = create(services)
    services.mongo.update(product.id, {"stock": 10}, None)  # cache v1, database v2
    racing = RepositoryWithHook(services.mongo)
    on_second_read(racing, lambda: services.products.update(product.id, {"stock": 30}, None))  # v3, cached

    run = run_audit(services, database=racing)

    assert run.drift["stale_version"] == 1 and run.repaired["stale_version"] == 0
    entry = entry_of(services, product.id)
    assert entry is not None and entry.version == 3 and parse(entry.payload or b"").stock == 30


class LaggingRepository:
    """A database read that returns each product one version behind (a lagging replica)."""

    def __init__(self, inner: MongoProductRepository) -> None:
        self.inner = inner

    def get_many(self, product_ids: list[str]) -> dict[str, ProductRecord]:
        current = self.inner.get_many(product_ids)
        return {pid: replace(r, version=r.version - 1, name="Old") for pid, r in current.items()}


def test_an_older_database_read_never_moves_the_cache_backwards(app: Flask, services: Services) -> None:
    product = create(services)
    services.products.update(product.id, {"name": "Current"}, None)  # v2 in the database and the cache

    run = run_audit(services, database=LaggingRepository(services.mongo))  # type: ignore[arg-type]

    # It looks like version_ahead; the repair may evict the entry, but never writes the v1 it was shown.
    assert run.drift["version_ahead"] == 1
    entry = entry_of(services, product.id)
    assert entry is None or entry.version == 2
    body = app.test_client().get(f"/api/v1/products/{product.id}").get_json()
    assert (body["version"], body["name"]) == (2, "Current")


def test_a_tombstone_hiding_an_existing_product_is_repaired(services: Services) -> None:
    assert services.cache is not None
    restored = create(services, sku="RESTORED")  # e.g. brought back by a database restore
    behind = create(services, sku="BEHIND")
    writer = services.cache.writer
    # Past the database's version: the cache claims a deletion MongoDB never saw.
    writer.cache.evict_versioned(
        services.cache.keys.product(restored.id).entry, services.cache.keys.product(restored.id).lease, 1
    )
    assert writer.tombstone(restored.id, restored.version + 5)
    # At the database's version: a write-through that should have replaced it failed.
    writer.cache.evict_versioned(
        services.cache.keys.product(behind.id).entry, services.cache.keys.product(behind.id).lease, 1
    )
    assert writer.tombstone(behind.id, behind.version - 1)

    run = run_audit(services)

    assert run.drift["version_ahead"] == 1 and run.drift["stale_version"] == 1
    assert run.repaired["version_ahead"] == 1 and run.repaired["stale_version"] == 1
    assert entry_of(services, restored.id) is None  # evicted: the next read fills it
    assert record_read(services.products.get_body(restored.id)).value == restored
    fixed = entry_of(services, behind.id)
    assert fixed is not None and fixed.payload is not None and parse(fixed.payload) == behind
