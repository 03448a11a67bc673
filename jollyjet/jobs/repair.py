"""Replay cache writes that failed after their database write (Redis was down or timing out).

The records are in MongoDB (cache/fence.py). Each product named is rewritten
from the database under its fill lease, exactly like a read miss
(ProductCacheWriter.fill_leased): the lease is taken before the database read, so a
client write or delete after that read revokes it and the older state never lands,
even when the entry was evicted or the tombstone expired meanwhile. A product deleted
since is tombstoned. Then the global generation is bumped once (every list, count and
the category list). A Redis that comes back with old data (an RDB snapshot from before
the outage) therefore stops serving it as soon as this job runs.

A record is marked done only when its product's entry was written, or was seen to
hold that state or a newer one (or nothing), and the bump succeeded. A product whose
lease another filler held, or whose older entry a lost lease left in place, is
deferred: its records stay pending for the next run. If Redis fails midway, they all
stay pending.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

from jollyjet.cache.fence import RepairLog
from jollyjet.cache.store import CacheBackend, CacheError, VersionedEntry
from jollyjet.extensions import Services
from jollyjet.products.catalog_writes import BATCH_LEASE_TTL_MS, ProductCacheWriter
from jollyjet.products.record import ProductRecord
from jollyjet.products.repository import MongoProductRepository
from jollyjet.settings import REPAIR_BATCH, Settings

log = logging.getLogger(__name__)
# Leases are taken for this many products at a time, so none expires while the rest are taken.
LEASE_CHUNK = 100


@dataclass
class RepairReport:
    """What one repair run did."""

    records: int = 0  # replayed and marked done (a deferred record stays pending, counted in `remaining`)
    products: int = 0
    rewritten: int = 0
    tombstoned: int = 0
    unchanged: int = 0
    deferred: int = 0  # not repaired this run (lease held by a concurrent fill, or lost); records stay pending
    lists_invalidated: bool = False
    remaining: int = 0
    duration_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready report."""
        return asdict(self)


def run_repair(services: Services, settings: Settings) -> RepairReport:
    """The repair job: up to REPAIR_BATCH records (the generation bump covers lists, counts and categories)."""
    cache = services.require_cache()
    return repair_failed_writes(cache.repairs, cache.backend, cache.writer, services.mongo, REPAIR_BATCH)


def repair_failed_writes(
    repairs: RepairLog,
    cache: CacheBackend,
    writer: ProductCacheWriter,
    database: MongoProductRepository,
    batch: int,
    *,
    lease_ttl_ms: int = BATCH_LEASE_TTL_MS,
) -> RepairReport:
    """Replay up to `batch` pending records; raises CacheError (records stay pending) if Redis fails."""
    started = time.monotonic()
    report = RepairReport()
    pending = repairs.pending(batch)
    if pending:
        product_ids = list(dict.fromkeys(r.product_id for r in pending))
        report.products = len(product_ids)
        try:
            repaired: set[str] = set()
            for start in range(0, len(product_ids), LEASE_CHUNK):
                chunk = product_ids[start : start + LEASE_CHUNK]
                repaired |= _rewrite(chunk, cache, writer, database, lease_ttl_ms, report)
            if repaired:
                writer.invalidate_lists()
        except CacheError:
            repairs.mark_attempted([r.id for r in pending])
            raise
        report.lists_invalidated = bool(repaired)
        replayed = [r.id for r in pending if r.product_id in repaired]
        repairs.mark_done(replayed)
        report.records = len(replayed)
    report.remaining = repairs.pending_count()
    report.duration_s = round(time.monotonic() - started, 4)
    if pending:
        log.info("cache repair: %s", report.as_dict())
    return report


def _rewrite(
    product_ids: list[str],
    cache: CacheBackend,
    writer: ProductCacheWriter,
    database: MongoProductRepository,
    lease_ttl_ms: int,
    report: RepairReport,
) -> set[str]:
    """Rewrite these products under their leases; the ids whose entries now match the database."""
    fills = writer.fill_leased(product_ids, database.get_many, lease_ttl_ms)
    report.rewritten += len(fills.landed)
    report.deferred += len(fills.busy)
    repaired = set(fills.landed)
    looked_at = [*fills.absent, *fills.refused]
    entries = cache.get_versioned_many([writer.keys.product(pid).entry for pid in looked_at])
    for product_id, entry in zip(looked_at, entries, strict=True):
        record = fills.refused.get(product_id)
        if record is None:  # deleted since the failed write
            if entry is not None and not entry.is_tombstone:
                writer.tombstone(product_id, entry.version)
                report.tombstoned += 1
            else:
                report.unchanged += 1
        elif _hides(entry, record):
            # The lease was lost (it expired, or was evicted) and nothing newer replaced the
            # entry: not repaired, the record stays pending.
            report.deferred += 1
            continue
        else:
            # A newer version is cached (a client write after our read), or nothing is: both
            # are states the database held, and the next read fills from it.
            report.unchanged += 1
        repaired.add(product_id)
    return repaired


def _hides(entry: VersionedEntry | None, record: ProductRecord) -> bool:
    """Does the entry hide this database version: an older version, or a tombstone at it?"""
    if entry is None:
        return False
    return entry.version < record.version or (entry.is_tombstone and entry.version == record.version)
