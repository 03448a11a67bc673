"""Replay cache writes that failed after their database write (the records: MongoDB, cache/fence.py).

Each product is rewritten from the database under its fill lease like a read miss (a later client write
revokes it), or tombstoned if deleted since; then the generation is bumped once (lists, counts, categories),
so a Redis back with old data stops serving it. A record is done only when its entry matches and the bump
succeeded; a product whose lease is held or lost is deferred, and a Redis failure midway leaves all pending.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

from jollyjet.cache.fence import RepairLog
from jollyjet.cache.store import CacheBackend, CacheError, VersionedEntry
from jollyjet.extensions import Services
from jollyjet.products.catalog_writes import BATCH_LEASE_TTL_MS, LeasedFills, ProductCacheWriter
from jollyjet.products.record import ProductRecord
from jollyjet.products.repository import MongoProductRepository
from jollyjet.settings import REPAIR_BATCH, Settings

log = logging.getLogger(__name__)
# Leases are taken for this many products at a time, so none expires while the rest are taken.
LEASE_CHUNK = 100


@dataclass
class RepairReport:
    """What one repair run did."""

    records: int = 0  # replayed and marked done
    products: int = 0
    rewritten: int = 0
    tombstoned: int = 0
    unchanged: int = 0
    deferred: int = 0  # lease held by a concurrent fill, or lost: its records stay pending
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
                fills = writer.fill_leased(product_ids[start : start + LEASE_CHUNK], database.get_many, lease_ttl_ms)
                repaired |= _settle(fills, cache, writer, report)
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


def _settle(fills: LeasedFills, cache: CacheBackend, writer: ProductCacheWriter, report: RepairReport) -> set[str]:
    """Count one chunk's leased rewrites; the ids whose entries now match the database."""
    report.rewritten += len(fills.landed)
    report.deferred += len(fills.busy)
    repaired = set(fills.landed)
    looked_at = [*fills.absent, *fills.refused]
    entries = cache.get_versioned_many([writer.keys.product(pid).entry for pid in looked_at])
    for product_id, entry in zip(looked_at, entries, strict=True):
        record = fills.refused.get(product_id)
        if record is None and entry is not None and not entry.is_tombstone:  # deleted since the failed write
            writer.tombstone(product_id, entry.version)
            report.tombstoned += 1
        elif record is not None and _hides(entry, record):
            report.deferred += 1  # the lease was lost and nothing newer replaced the entry
            continue
        else:
            report.unchanged += 1  # nothing cached, a tombstone, or a newer version (a client write since)
        repaired.add(product_id)
    return repaired


def _hides(entry: VersionedEntry | None, record: ProductRecord) -> bool:
    """Does the entry hide this database version: an older version, or a tombstone at it?"""
    return entry is not None and (
        entry.version < record.version or (entry.is_tombstone and entry.version == record.version)
    )
