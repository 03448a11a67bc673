"""TTL cleanup: old schemas and generations, keys without a TTL, popularity sets, old repair records.

Key handling runs on redis-py over fakeredis, so TTLs and ranked sets behave as
Redis's own commands.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from jollyjet.cache.fence import CacheRepairRecord
from jollyjet.cache.keys import CacheKeys
from jollyjet.cache.store import CacheBackend
from jollyjet.extensions import Services
from jollyjet.jobs.cleanup import CacheCleanup, CleanupReport
from jollyjet.products.catalog import CachePolicy
from jollyjet.products.record import ProductRecord
from tests.support.fake_cache import write_entry
from tests.support.job_stack import (
    all_keys,
    drop_ttl,
    plant_without_ttl,
    product_values,
)


def run_cleanup(services: Services, **options: object) -> CleanupReport:
    assert services.cache is not None
    cleanup = CacheCleanup(
        services.cache.backend,
        services.cache.keys,
        services.cache.writer,
        services.mongo,
        services.cache.repairs,
        **options,  # type: ignore[arg-type]
    )
    return cleanup.run()


def create(services: Services) -> ProductRecord:
    return services.products.create(product_values())


def test_cleanup_handles_each_kind_of_leftover_and_nothing_else(services: Services, backend: CacheBackend) -> None:
    keys = services.cache.keys
    permanent, expiring, leased = create(services), create(services), create(services)
    deleted = create(services)
    services.products.delete(deleted.id, None)  # a tombstone, with its TTL
    generation = backend.get_generation(keys.generation)

    # Older schemas: unreadable since the deploy that bumped SCHEMA_VERSION, TTL or not.
    v0, v2 = CacheKeys(keys.prefix, schema=0), CacheKeys(keys.prefix, schema=keys.schema + 1)
    v0_entry = v0.product(permanent.id)
    write_entry(backend, v0_entry, b"old bytes", 1, 600)
    plant_without_ttl(backend, v2.generation, b"5")
    backend.client.set(f"{v2.root}:products:{{products}}:list:5:abc123", b"page", ex=60)
    old_schema = {v0_entry.entry, v2.generation, f"{v2.root}:products:{{products}}:list:5:abc123"}
    # List/count results (and a fill lock) of older generations: unreachable already.
    old_list = keys.query_result("list", generation - 1, {"page": 1})
    old_generation = {old_list, keys.query_result("count", generation - 5, {}), keys.fill_lock(old_list)}
    for key in old_generation:
        backend.client.set(key, b"stale", ex=60)
    current_list = keys.query_result("list", generation, {"page": 1})
    backend.client.set(current_list, b"page", ex=60)
    # Product entries and tombstones without a TTL get their policy TTL.
    drop_ttl(backend, keys.product(permanent.id).entry)
    drop_ttl(backend, keys.product(deleted.id).entry)
    # Leases, locks, results (a category list too) and claims without a TTL are deleted.
    unbounded_list = keys.query_result("list", generation, {"page": 2})
    no_ttl_deleted = {
        keys.product(leased.id).lease,
        keys.job_lock("audit"),
        keys.beat_claim("cache-warm", 12),
        unbounded_list,
        keys.fill_lock(unbounded_list),
        keys.query_result("categories", generation, {}),
    }
    for key in no_ttl_deleted:
        plant_without_ttl(backend, key)
    # Left alone: other prefixes, keys under the prefix that are not ours, unknown kinds, and
    # what has no TTL by design (the generation; popularity is tested below).
    other = CacheKeys("other")
    untouched = {
        other.product(permanent.id).entry,
        f"{other.prefix}:v0:old",
        f"{keys.prefix}:visits",
        f"{keys.prefix}x:v0:lookalike",
        f"{keys.root}:mystery",
    }
    for key in untouched:
        plant_without_ttl(backend, key)
    scanned = all_keys(backend, keys.service_pattern())
    before = all_keys(backend)

    report = run_cleanup(services)

    assert report.keys_scanned == len(scanned)
    assert report.old_schema_deleted == 3
    assert report.old_generation_deleted == 3
    assert report.ttl_added == 2
    assert report.no_ttl_deleted == 6
    assert (report.popularity_trimmed, report.popularity_deleted_products, report.repair_records_purged) == (0, 0, 0)
    assert report.by_kind["product"] == 4 and report.by_kind["generation"] == 1 and report.by_kind["unknown"] == 1
    assert all_keys(backend) == before - old_schema - old_generation - no_ttl_deleted
    for key in untouched:
        assert backend.client.ttl(key) == -1
    assert backend.client.ttl(keys.generation) == -1  # deliberately permanent
    permanent_ttl = backend.client.ttl(keys.product(permanent.id).entry)
    assert permanent_ttl is not None and 0 < permanent_ttl <= services.cache.writer.max_product_ttl()  # type: ignore[union-attr]
    tombstone_ttl = backend.client.ttl(keys.product(deleted.id).entry)
    assert tombstone_ttl is not None and 0 < tombstone_ttl <= CachePolicy().tombstone_ttl_s
    assert backend.get_versioned(keys.product(deleted.id).entry).is_tombstone  # type: ignore[union-attr]
    # Entries that had a TTL keep theirs; a current-generation result stays readable.
    assert backend.get_versioned(keys.product(expiring.id).entry).version == 1  # type: ignore[union-attr]
    assert backend.get(current_list) == b"page"

    again = run_cleanup(services)  # idempotent: nothing left to do
    assert (again.old_schema_deleted, again.old_generation_deleted, again.ttl_added, again.no_ttl_deleted) == (0,) * 4
    assert again.keys_scanned == len(scanned) - 12


def test_popularity_is_trimmed_and_loses_deleted_and_malformed_members(
    services: Services, backend: CacheBackend
) -> None:
    keys = services.cache.keys
    products = [create(services) for _ in range(5)]
    gone = create(services)
    services.products.delete(gone.id, None)
    p0, p1, p2, p3, p4 = (p.id for p in products)
    # By rank: gone, p0, p1, not-an-id, p2, p3 | p4 (beyond the limit of 6).
    scores = {gone.id: 100.0, p0: 90.0, p1: 80.0, "not-an-id": 70.0, p2: 60.0, p3: 50.0, p4: 40.0}
    backend.incr_scores(keys.popular_products, scores)
    backend.incr_scores(keys.popular_queries, {f'{{"page": 1, "page_size": {n}}}': float(n) for n in range(1, 9)})

    # A batch of 2 walks the ranks while members are removed under it.
    report = run_cleanup(services, popularity_max=6, scan_batch=2)

    assert report.popularity_trimmed == 1 + 2  # the lowest product, the two lowest queries
    assert report.popularity_deleted_products == 2
    assert backend.top_members(keys.popular_products, 0, -1) == [p0, p1, p2, p3]
    assert len(backend.top_members(keys.popular_queries, 0, -1)) == 6
    assert backend.client.ttl(keys.popular_products) == -1  # no TTL by design: not swept as "missing a TTL"
    assert run_cleanup(services, popularity_max=6, scan_batch=2).popularity_deleted_products == 0


def test_repaired_records_older_than_the_retention_are_purged(services: Services) -> None:
    now = datetime.now(UTC)

    def record(created_days_ago: int, done_days_ago: int | None) -> CacheRepairRecord:
        done_at = None if done_days_ago is None else now - timedelta(days=done_days_ago)
        created_at = now - timedelta(days=created_days_ago)
        return CacheRepairRecord(product_id="a" * 24, reason="write", created_at=created_at, done_at=done_at).save()

    old_done = record(10, 8)
    recent_done = record(10, 1)
    old_pending = record(30, None)  # never purged, however old: it still needs repairing

    report = run_cleanup(services, repair_retention=timedelta(days=7))

    assert report.repair_records_purged == 1
    remaining = {r.id for r in CacheRepairRecord.objects}
    assert remaining == {recent_done.id, old_pending.id} and old_done.id not in remaining
