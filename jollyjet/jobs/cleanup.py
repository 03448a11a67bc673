"""TTL cleanup: what Redis's own expiry does not clean.

Keys of older schema versions and list/count results of old generations (unreachable, freed now); keys
missing a TTL (products and tombstones get theirs, other kinds are deleted: a lock with no expiry blocks
forever); popularity trimmed and rid of deleted products; repair records done longer ago than the retention.
SCAN in bounded batches and UNLINK, never KEYS or FLUSHDB: safe on a large Redis shared with other services.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

from jollyjet.cache.fence import RepairLog
from jollyjet.cache.keys import CacheKeys, KeyKind, generation_of, kind_of, schema_of
from jollyjet.cache.store import CacheBackend
from jollyjet.extensions import Services
from jollyjet.products.catalog_writes import ProductCacheWriter
from jollyjet.products.repository import MongoProductRepository
from jollyjet.settings import CLEANUP_SCAN_BATCH, POPULARITY_MAX_MEMBERS, REPAIR_RETENTION_DAYS, Settings

log = logging.getLogger(__name__)
# Kept without a TTL on purpose: the generation must outlive every result key, popularity is trimmed
# instead, and the filter registry's members lapse by score (scripts.LIVE_FILTERS drops them).
_NO_TTL_BY_DESIGN = frozenset(
    {KeyKind.GENERATION, KeyKind.FILTER_REGISTRY, KeyKind.WRITES_IN_FLIGHT, KeyKind.POPULARITY, KeyKind.UNKNOWN}
)


@dataclass
class CleanupReport:
    """What one cleanup run found and did."""

    keys_scanned: int = 0
    old_schema_deleted: int = 0
    old_generation_deleted: int = 0
    ttl_added: int = 0
    no_ttl_deleted: int = 0
    popularity_trimmed: int = 0
    popularity_deleted_products: int = 0
    repair_records_purged: int = 0
    duration_s: float = 0.0
    by_kind: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready report."""
        return {**asdict(self), "by_kind": dict(self.by_kind)}


def run_cleanup(services: Services, settings: Settings) -> CleanupReport:
    """The cleanup job, with the batch sizes and retention of jollyjet/settings.py."""
    cache = services.require_cache()
    return CacheCleanup(cache.backend, cache.keys, cache.writer, services.mongo, cache.repairs).run()


@dataclass
class CacheCleanup:
    """One cleanup run (batch sizes and retention: constants in jollyjet/settings.py; tests pass smaller ones)."""

    cache: CacheBackend
    keys: CacheKeys
    writer: ProductCacheWriter
    database: MongoProductRepository
    repairs: RepairLog
    scan_batch: int = CLEANUP_SCAN_BATCH
    popularity_max: int = POPULARITY_MAX_MEMBERS
    repair_retention: timedelta = timedelta(days=REPAIR_RETENTION_DAYS)

    def run(self) -> CleanupReport:
        """Sweep the service's keys, trim popularity, purge old repair records."""
        started = time.monotonic()
        report = CleanupReport()
        generation = self.cache.get_generation(self.keys.generation)
        for batch in self.cache.scan(self.keys.service_pattern(), self.scan_batch):
            report.keys_scanned += len(batch)
            self._sweep(batch, generation, report)
        self._trim_popularity(report)
        report.repair_records_purged = self.repairs.purge_done(self.repair_retention)
        report.duration_s = round(time.monotonic() - started, 4)
        log.info("cache cleanup: %s", report.as_dict())
        return report

    def _sweep(self, batch: list[str], generation: int, report: CleanupReport) -> None:
        # The glob `<prefix>:v*` also matches e.g. `<prefix>:visits` (no schema, not ours): skip those.
        old_schema = [k for k in batch if (s := schema_of(k)) is not None and s != self.keys.schema]
        report.old_schema_deleted += self.cache.delete(*old_schema)
        current = [k for k in batch if schema_of(k) == self.keys.schema]
        old_generation = [k for k in current if (g := generation_of(k)) is not None and g < generation]
        report.old_generation_deleted += self.cache.delete(*old_generation)
        stale = set(old_generation)
        live = [k for k in current if k not in stale]
        kinds = {k: kind_of(self.keys, k) for k in live}
        report.by_kind.update(kinds.values())
        without_ttl = [k for k, t in zip(live, self.cache.ttl_many(live), strict=True) if t == -1]
        for key in without_ttl:
            self._give_ttl(key, kinds[key], report)

    def _give_ttl(self, key: str, kind: KeyKind, report: CleanupReport) -> None:
        if kind in _NO_TTL_BY_DESIGN:
            return
        if kind is KeyKind.PRODUCT:
            entry = self.cache.get_versioned(key)
            ttl = self.writer.tombstone_ttl_s if entry is not None and entry.is_tombstone else self.writer.product_ttl()
            report.ttl_added += self.cache.expire(key, ttl)
        else:
            report.no_ttl_deleted += self.cache.delete(key)

    def _trim_popularity(self, report: CleanupReport) -> None:
        # Trim first: it bounds the walk below (a run may therefore end a few members under the limit).
        for key in (self.keys.popular_products, self.keys.popular_queries):
            report.popularity_trimmed += self.cache.trim_ranked(key, self.popularity_max)
        batch, start = self.scan_batch, 0
        while True:
            ids = self.cache.top_members(self.keys.popular_products, start, start + batch - 1)
            if not ids:
                return
            existing = self.database.get_many(ids)
            gone = [pid for pid in ids if pid not in existing]
            report.popularity_deleted_products += self.cache.remove_members(self.keys.popular_products, gone)
            start += batch - len(gone)  # removed members shift the ranks below them up
