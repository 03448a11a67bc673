"""Replay cache writes that failed after their database write (Redis was down or timing out).

The records are in MongoDB (cache/repair_log.py). For each product named, the
current database state is written with the version guard, or — for a product
deleted since — its entry is tombstoned; then the list generation is bumped once.
A Redis that comes back with old data (an RDB snapshot from before the outage)
therefore stops serving it as soon as this job runs. Records are marked done only
after their keys were rewritten; if Redis fails midway, they stay pending.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

from jollyjet.cache.backend import CacheBackend, CacheError
from jollyjet.cache.repair_log import RepairLog
from jollyjet.products.cache.writer import ProductCacheWriter
from jollyjet.products.repository import ProductRepository
from jollyjet.services import Services
from jollyjet.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class RepairReport:
    """What one repair run did."""

    records: int = 0
    products: int = 0
    rewritten: int = 0
    tombstoned: int = 0
    unchanged: int = 0
    lists_invalidated: bool = False
    remaining: int = 0
    duration_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready report."""
        return asdict(self)


def run_repair(services: Services, settings: Settings) -> RepairReport:
    """The repair job: up to repair_batch records (the generation bump covers lists, counts and categories)."""
    cache = services.require_cache()
    return repair_failed_writes(cache.repairs, cache.backend, cache.writer, services.mongo, settings.repair_batch)


def repair_failed_writes(
    repairs: RepairLog,
    cache: CacheBackend,
    writer: ProductCacheWriter,
    database: ProductRepository,
    batch: int,
) -> RepairReport:
    """Replay up to `batch` pending records; raises CacheError (records stay pending) if Redis fails."""
    started = time.monotonic()
    report = RepairReport()
    pending = repairs.pending(batch)
    report.records = len(pending)
    if pending:
        product_ids = list(dict.fromkeys(r.product_id for r in pending))
        report.products = len(product_ids)
        try:
            _rewrite(product_ids, cache, writer, database, report)
            writer.invalidate_lists()
        except CacheError:
            repairs.mark_attempted([r.id for r in pending])
            raise
        report.lists_invalidated = True
        repairs.mark_done([r.id for r in pending])
    report.remaining = repairs.pending_count()
    report.duration_s = round(time.monotonic() - started, 4)
    if report.records:
        log.info("cache repair: %s", report.as_dict())
    return report


def _rewrite(
    product_ids: list[str],
    cache: CacheBackend,
    writer: ProductCacheWriter,
    database: ProductRepository,
    report: RepairReport,
) -> None:
    records = database.get_many(product_ids)
    entries = cache.get_versioned_many([writer.keys.product(pid).entry for pid in product_ids])
    for product_id, entry in zip(product_ids, entries, strict=True):
        record = records.get(product_id)
        if record is not None:
            # Refused only when something newer is cached already: nothing to repair then.
            if writer.write(record):
                report.rewritten += 1
            else:
                report.unchanged += 1
        elif entry is not None and not entry.is_tombstone:
            writer.tombstone(product_id, entry.version)
            report.tombstoned += 1
        else:
            report.unchanged += 1
