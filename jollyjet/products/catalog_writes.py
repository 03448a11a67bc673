"""Every write of the catalog cache: product entries, the protocol of a client write, invalidation.

Entry writes are version-guarded scripts (cache/scripts.py): no caller can move an entry backwards.
A client write (commit) is marked in Redis before MongoDB sees it: until its cache update lands or
the mark lapses, the product is read from MongoDB. A cache failure never fails the write: it is
recorded for the repair job. Invalidation by filter set and aspect: docs/cache.md.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

from jollyjet.cache.fence import RepairFence, RepairLog
from jollyjet.cache.keys import CacheKeys, TtlPolicy
from jollyjet.cache.store import CacheBackend, CacheError, CacheEvents
from jollyjet.products.record import (
    DECODE_ERRORS,
    GROUP_CATEGORY,
    MEMBERS,
    SORT_FIELDS,
    ProductBody,
    ProductRecord,
    body_of,
    is_product_id,
    parse,
    render,
)
from jollyjet.products.repository import DatabaseUnavailable, DuplicateSku, ProductNotFound, VersionConflict

if TYPE_CHECKING:
    from jollyjet.products.catalog import CachePolicy
    from jollyjet.products.repository import MongoProductRepository

log = logging.getLogger(__name__)
# A version written longer ago has finished its list invalidation (a longer request has timed out:
# gunicorn's --timeout is 30 s), with room for clock skew between MongoDB (updated_at) and us.
SETTLED_AFTER = timedelta(seconds=120)
# A job's batch leases (repair, audit) outlive its one database read and its fills on a slow Redis
# (100 products at 100 ms: 10 s); writes revoke them all the same, and a run hands back what it holds.
BATCH_LEASE_TTL_MS = 30_000


def _filters_of(member: str) -> dict[str, Any] | None:
    """The filter set a registry member names, or None if it is not one."""
    try:
        value = orjson.loads(member)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def matches(filters: dict[str, Any], record: ProductRecord) -> bool:
    """Could the record match these filters? Exact for every filter but `q` (assumed to match)."""
    checks = {
        "category": lambda v: record.category == v,
        "tag": lambda v: v in record.tags,
        "min_price_cents": lambda v: record.price_cents >= v,
        "max_price_cents": lambda v: record.price_cents <= v,
        "in_stock": lambda v: (record.stock > 0) == v,
        "is_active": lambda v: record.is_active == v,
    }
    # An unknown condition (a newer deploy's filter) is ignored: a superset, so safe.
    return all(check(filters[name]) for name, check in checks.items() if name in filters)


def changed_aspects(filters: dict[str, Any], before: ProductRecord | None, after: ProductRecord | None) -> set[str]:
    """The aspects of this filter set that a write from `before` to `after` changes (None: absent)."""
    in_before = before is not None and matches(filters, before)
    in_after = after is not None and matches(filters, after)
    if not in_before and not in_after:
        return set()
    if before is None or after is None or in_before != in_after or ("q" in filters and before.name != after.name):
        return {MEMBERS}
    changed = {f"order.{field}" for field in SORT_FIELDS.values() if getattr(before, field) != getattr(after, field)}
    return (changed | {GROUP_CATEGORY}) if before.category != after.category else changed


def written_long_ago(record: ProductRecord) -> bool:
    """May a fill of this record serve the next write as its before-image (scripts.SWAP_VERSIONED)?"""
    # A fill reads a committed version whose write may still be invalidating lists: one written
    # moments ago is left unsettled (the next write then invalidates every list and count).
    return datetime.now(UTC) - record.updated_at > SETTLED_AFTER  # records hold aware times (record._aware)


@dataclass
class LeasedFills:
    """What fill_leased did with each id."""

    landed: list[str] = field(default_factory=list)  # the database state was written
    refused: dict[str, ProductRecord] = field(default_factory=dict)  # read, not written: newer cached or lease lost
    absent: list[str] = field(default_factory=list)  # not in the database
    busy: list[str] = field(default_factory=list)  # another filler held the lease: neither read nor written


class ProductCacheWriter:
    """Version-guarded writes of product entries, the write protocol of client writes, and invalidation."""

    def __init__(
        self,
        cache: CacheBackend,
        keys: CacheKeys,
        ttl: TtlPolicy,
        policy: CachePolicy,
        repairs: RepairLog,
        events: CacheEvents,
        fence: RepairFence | None = None,
    ) -> None:
        self.cache, self.keys, self.ttl, self.policy = cache, keys, ttl, policy
        self.tombstone_ttl_s = policy.tombstone_ttl_s
        self.repairs, self.events, self.fence = repairs, events, fence

    def product_ttl(self) -> int:
        """A jittered product TTL."""
        return self.ttl.seconds(self.policy.product_ttl_s)

    def max_product_ttl(self) -> int:
        """The longest TTL product_ttl() can return (the audit flags longer ones)."""
        return round(self.policy.product_ttl_s * (1 + self.ttl.jitter)) + 1

    # --- entries ------------------------------------------------------------------------
    def write_through(self, record: ProductRecord, token: str) -> tuple[bool, ProductRecord | None]:
        """Store a committed write unless newer is cached: whether it landed, and the state it replaced if previous.

        token: the write's mark ('' for a create); a lapsed mark lands nothing (scripts.SWAP_VERSIONED)."""
        keys = self.keys.product(record.id)
        landed, before = self.cache.swap_versioned(
            keys.entry, keys.lease, keys.pending, render(record), record.version, self.product_ttl(), token
        )
        try:
            return landed, None if before is None else parse(before)
        except DECODE_ERRORS:
            return landed, None

    def tombstone(self, product_id: str, deleted_version: int, token: str = "") -> bool:
        """Mark a deleted product one version past it (an earlier read's fill is refused); finishes the mark."""
        keys = self.keys.product(product_id)
        return self.cache.tombstone(
            keys.entry, keys.lease, keys.pending, deleted_version + 1, self.tombstone_ttl_s, token
        )

    def evict(self, product_id: str, seen_version: int) -> bool:
        """Remove the entry only if it still holds seen_version (nothing rewrote it since we looked)."""
        keys = self.keys.product(product_id)
        return self.cache.evict_versioned(keys.entry, keys.lease, seen_version)

    def fill(self, product_id: str, token: str, rendered: ProductBody) -> bool:
        """Fill after a miss: lands only while the lease token is still valid and nothing newer is cached."""
        keys = self.keys.product(product_id)
        settled = rendered.record is not None and written_long_ago(rendered.record)
        return self.cache.fill_versioned(
            keys.entry, keys.lease, keys.pending, token, rendered.body, rendered.version, self.product_ttl(), settled
        )

    def fill_absent(self, product_id: str, token: str) -> bool:
        """Cache a product MongoDB does not hold as absent (tombstone TTL; a create replaces it)."""
        keys = self.keys.product(product_id)
        return self.cache.fill_absent(keys.entry, keys.lease, keys.pending, token, self.tombstone_ttl_s)

    def fill_missing(self, product_ids: Sequence[str], load: Callable[[list[str]], dict[str, ProductRecord]]) -> int:
        """Fill the entries of these ids not cached (or in doubt) with leases, like read misses; how many landed."""
        entries = self.cache.get_versioned_many([self.keys.product(pid).entry for pid in product_ids])
        uncached = [pid for pid, entry in zip(product_ids, entries, strict=True) if entry is None or entry.pending]
        return len(self.fill_leased(uncached, load, self.policy.lease_ttl_ms).landed) if uncached else 0

    def fill_leased(
        self, product_ids: Sequence[str], load: Callable[[list[str]], dict[str, ProductRecord]], lease_ttl_ms: int
    ) -> LeasedFills:
        """Rewrite these entries from one query under leases taken before it (a later write revokes one)."""
        fills = LeasedFills()
        held: dict[str, str] = {}
        try:
            # Every lease in one round trip: one by one on a slow Redis, the first would expire before the fills.
            leases = self.cache.acquire_locks([self.keys.product(pid).lease for pid in product_ids], lease_ttl_ms)
            for pid, token in zip(product_ids, leases, strict=True):
                if token:
                    held[pid] = token
                else:
                    fills.busy.append(pid)  # a read miss is filling it from a database read of its own
            records = load(list(held)) if held else {}
            for pid, token in list(held.items()):
                record = records.get(pid)
                if record is None:
                    self.cache.release_lock(self.keys.product(pid).lease, token)
                    fills.absent.append(pid)
                elif self.fill(pid, token, body_of(record)):  # the fill spends the lease, landed or not
                    fills.landed.append(pid)
                else:
                    fills.refused[pid] = record
                del held[pid]
        finally:
            # A failed run (Redis or MongoDB) hands back the leases it still holds, so read misses can fill.
            for pid, token in held.items():
                with contextlib.suppress(CacheError):
                    self.cache.release_lock(self.keys.product(pid).lease, token)
        return fills

    # --- invalidation -------------------------------------------------------------------
    def invalidate_lists(self, token: str = "") -> int:
        """Bump the global generation (every list and count at once); finishes the write's catalog mark."""
        return self.cache.finish_catalog_write(self.keys.writes_in_flight, self.keys.generation, (), token, True)

    def invalidate(self, before: ProductRecord | None, after: ProductRecord | None, token: str = "") -> int:
        """Bump what a write from before to after changed (None: absent); finishes its catalog mark."""
        stale: set[str] = set()
        everything = False
        for member in self.cache.live_filters(self.keys.filter_registry):
            filters = _filters_of(member)
            if filters is None:  # not written by this code: compare nothing, invalidate everything
                log.warning("unreadable filter registration; invalidating every list and count")
                everything = True
                break
            stale.update(self.keys.filter_generation(filters, a) for a in changed_aspects(filters, before, after))
        return self.cache.finish_catalog_write(
            self.keys.writes_in_flight, self.keys.generation, sorted(stale), token, bump_global=everything
        )

    # --- a client write -----------------------------------------------------------------
    def commit(self, product_id: str | None, write: Callable[[], ProductRecord], delete: bool = False) -> ProductRecord:
        """Run a client's MongoDB write (product_id None: a create) with the cache kept in step."""
        token = self._mark(product_id)
        record = self._in_mongodb(product_id, token, write)
        if not delete:
            self._write_through(record, token, created=product_id is None)
            return record
        try:
            self.tombstone(record.id, record.version, token)
            self.invalidate(record, None, token)
        except CacheError as error:
            self._record_failure(record.id, "delete", error)
        return record

    def _mark(self, product_id: str | None) -> str:
        """The write's token, marked in Redis; '' when Redis could not be marked."""
        if product_id is not None and not is_product_id(product_id):
            return ""  # not an id MongoDB can hold: the write answers 404, nothing is cached for it
        token = secrets.token_hex(8)
        product = None if product_id is None else self.keys.product(product_id)
        try:
            self.cache.mark_write(
                product, self.keys.writes_in_flight, self.keys.generation, token, self.policy.write_mark_ms
            )
        except CacheError as error:
            # Redis is failing: the update after the commit will most likely fail too and be recorded
            # for repair then. Recorded now, before the commit, a repair could re-cache the old version.
            log.warning("cache mark before a write failed: %s", error)
            return "" if product_id is not None else token
        return token

    def _in_mongodb(self, product_id: str | None, token: str, write: Callable[[], ProductRecord]) -> ProductRecord:
        """Run the MongoDB write; a certain failure drops the marks, an uncertain one invalidates the lists."""
        try:
            return write()
        except BaseException as error:
            certain = isinstance(error, (ProductNotFound, VersionConflict, DuplicateSku)) or (
                isinstance(error, DatabaseUnavailable) and error.never_sent
            )
            if not certain:
                self._in_doubt(product_id, token)
            elif token:
                product = None if product_id is None else self.keys.product(product_id)
                with contextlib.suppress(CacheError):  # the marks lapse by themselves
                    self.cache.abandon_write(product, self.keys.writes_in_flight, self.keys.generation, token)
            raise

    def _in_doubt(self, product_id: str | None, token: str) -> None:
        """An unknown outcome: the product stays in doubt until its mark lapses, lists go now (else: a repair)."""
        try:
            if not token:
                raise CacheError("the write was not marked")
            self.invalidate_lists(token)
        except CacheError as error:
            if product_id is not None:
                self._record_failure(product_id, "uncertain write", error)

    def _write_through(self, record: ProductRecord, token: str, created: bool = False) -> None:
        try:
            written, before = self.write_through(record, "" if created else token)
            if created:
                self.invalidate(None, record, token)
            elif before is None:
                self.invalidate_lists(token)  # the state before the write is unknown: every list and count
            else:
                self.invalidate(before, record, token)
            self.events.emit("write_through" if written else "write_refused", "product")
        except CacheError as error:
            self._record_failure(record.id, "write", error)
            return
        # Only now may this version be the next write's before-image (scripts.SWAP_VERSIONED): a write
        # comparing against it earlier could answer before this one invalidated what it changed.
        with contextlib.suppress(CacheError):
            self.cache.mark_settled(self.keys.product(record.id).entry, record.version)

    def _record_failure(self, product_id: str, operation: str, error: CacheError) -> None:
        self.events.emit("write_failure", "product")
        log.warning("cache %s for product %s failed after the database commit: %s", operation, product_id, error)
        if self.repairs.record(product_id, f"{operation}: {type(error).__name__}") and self.fence is not None:
            self.fence.note_failure(product_id)
            self.fence.commit_wait()  # the client hears of this write only once every process's fence includes it


class CatalogWrites:
    """The catalog cache's client writes (CachedProductRepository's): MongoDB first, then the cache (commit)."""

    inner: MongoProductRepository
    writer: ProductCacheWriter

    def create(self, values: dict[str, Any]) -> ProductRecord:
        """Insert a new product at version 1; raises DuplicateSku."""
        return self.writer.commit(None, lambda: self.inner.create(values))

    def update(self, product_id: str, values: dict[str, Any], expected_version: int | None) -> ProductRecord:
        """Set fields and increment version atomically; raises ProductNotFound, VersionConflict, DuplicateSku."""
        return self.writer.commit(product_id, lambda: self.inner.update(product_id, values, expected_version))

    def delete(self, product_id: str, expected_version: int | None) -> ProductRecord:
        """Remove the product; returns its last state. Raises ProductNotFound, VersionConflict."""
        return self.writer.commit(product_id, lambda: self.inner.delete(product_id, expected_version), delete=True)
