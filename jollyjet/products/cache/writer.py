"""Every write of a product's cache entry, in one place: write-through, tombstones, fills, repairs.

Each operation goes through a version-guarded Lua script (cache/scripts.py), so no
caller — request path, warming, audit or repair — can move an entry backwards.
Errors are CacheError and are the caller's to handle.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from jollyjet.cache.backend import CacheBackend, CacheError
from jollyjet.cache.keys import CacheKeys
from jollyjet.cache.ttl import TtlPolicy
from jollyjet.products import body
from jollyjet.products.body import ProductBody
from jollyjet.products.cache import codec
from jollyjet.products.domain import ProductRecord

# A version written longer ago than this has finished its list invalidation (a request
# that takes longer has timed out: gunicorn's --timeout is 30 s), with room for clock skew
# between MongoDB, which stamps updated_at, and this process.
SETTLED_AFTER = timedelta(seconds=120)
# The leases of a job's batch (repair, audit) outlive its one database read and its fills, one
# round trip each, on a slow Redis too (100 products at 100 ms: 10 s); a request's fill lease
# (CACHE_LEASE_TTL_MS) covers one read. Writes revoke them all the same, and a run
# hands back what it holds when it ends; only a killed run leaves its products unfilled this long.
BATCH_LEASE_TTL_MS = 30_000


def written_long_ago(record: ProductRecord) -> bool:
    """May a fill of this record serve the next write as its before-image (scripts.SWAP_VERSIONED)?

    A fill reads a committed version, but its write may still be invalidating lists: a
    fill of a version written moments ago is left unsettled (the next write then
    invalidates every list and count), one written long ago is settled.
    """
    written = record.updated_at if record.updated_at.tzinfo else record.updated_at.replace(tzinfo=UTC)
    return datetime.now(UTC) - written > SETTLED_AFTER


class ProductCacheWriter:
    """Version-guarded writes of product entries and the list generation."""

    def __init__(
        self, cache: CacheBackend, keys: CacheKeys, ttl: TtlPolicy, product_ttl_s: int, tombstone_ttl_s: int
    ) -> None:
        self.cache = cache
        self.keys = keys
        self.ttl = ttl
        self.product_ttl_s = product_ttl_s
        self.tombstone_ttl_s = tombstone_ttl_s

    def product_ttl(self) -> int:
        """A jittered product TTL."""
        return self.ttl.seconds(self.product_ttl_s)

    def max_product_ttl(self) -> int:
        """The longest TTL product_ttl() can return (the audit flags longer ones)."""
        return round(self.product_ttl_s * (1 + self.ttl.jitter)) + 1

    def mark(self, product_id: str | None, token: str, ttl_ms: int) -> None:
        """Before the MongoDB write: the write is in flight (for the product; None for a create) and the catalog."""
        product = None if product_id is None else self.keys.product(product_id)
        self.cache.mark_write(product, self.keys.writes_in_flight, self.keys.generation, token, ttl_ms)

    def abandon(self, product_id: str | None, token: str) -> None:
        """The MongoDB write certainly changed nothing (a conflict, a duplicate): drop its marks."""
        product = None if product_id is None else self.keys.product(product_id)
        self.cache.abandon_write(product, self.keys.writes_in_flight, self.keys.generation, token)

    def write_through(self, record: ProductRecord, token: str) -> tuple[bool, ProductRecord | None]:
        """Store a committed write unless a newer version is cached (revoking fill leases): whether it
        landed, and the state it replaced when that was the previous version (the write's
        before-image, for list invalidation), else None.

        token: the write's mark ('' for a create). A write whose mark lapsed lands nothing and
        drops what is cached of the product instead (scripts.SWAP_VERSIONED).
        """
        keys = self.keys.product(record.id)
        landed, before = self.cache.swap_versioned(
            keys.entry, keys.lease, keys.pending, body.render(record), record.version, self.product_ttl(), token
        )
        if before is None:
            return landed, None
        try:
            return landed, body.parse(before)
        except codec.DECODE_ERRORS:
            return landed, None

    def settle(self, product_id: str, version: int) -> bool:
        """This write's list invalidation is done: its entry may serve the next write as a before-image."""
        return self.cache.mark_settled(self.keys.product(product_id).entry, version)

    def tombstone(self, product_id: str, deleted_version: int, token: str = "") -> bool:
        """Mark a deleted product: the tombstone is one version past the deleted one, so a
        fill that read the product before the delete carries an older version and is refused.
        token: the delete's mark, which this finishes for the product."""
        keys = self.keys.product(product_id)
        return self.cache.tombstone(
            keys.entry, keys.lease, keys.pending, deleted_version + 1, self.tombstone_ttl_s, token
        )

    def evict(self, product_id: str, seen_version: int) -> bool:
        """Remove the entry only if it still holds seen_version (nothing rewrote it since we looked)."""
        keys = self.keys.product(product_id)
        return self.cache.evict_versioned(keys.entry, keys.lease, seen_version)

    def fill(self, product_id: str, token: str, record: ProductRecord) -> bool:
        """Fill after a miss: lands only while the lease token is still valid and nothing newer is cached."""
        return self.fill_body(product_id, token, body.of(record))

    def fill_body(self, product_id: str, token: str, rendered: ProductBody) -> bool:
        """fill() of an already rendered body."""
        keys = self.keys.product(product_id)
        settled = rendered.record is not None and written_long_ago(rendered.record)
        return self.cache.fill_versioned(
            keys.entry, keys.lease, keys.pending, token, rendered.body, rendered.version, self.product_ttl(), settled
        )

    def fill_absent(self, product_id: str, token: str) -> bool:
        """Fill after a miss that found no such product: cached as absent for the tombstone TTL, so
        unknown ids do not each cost a database query; a create always replaces it."""
        keys = self.keys.product(product_id)
        return self.cache.fill_absent(keys.entry, keys.lease, keys.pending, token, self.tombstone_ttl_s)

    def fill_missing(
        self, product_ids: Sequence[str], load: Callable[[list[str]], dict[str, ProductRecord]], lease_ttl_ms: int
    ) -> int:
        """Fill the entries of these ids that are not cached (or in doubt), with leases exactly like read misses
        (so a concurrent write always wins); one database query for the batch. Returns how many landed."""
        entries = self.cache.get_versioned_many([self.keys.product(pid).entry for pid in product_ids])
        uncached = [pid for pid, entry in zip(product_ids, entries, strict=True) if entry is None or entry.pending]
        return len(self.fill_leased(uncached, load, lease_ttl_ms).landed) if uncached else 0

    def invalidate_lists(self, token: str = "") -> int:
        """Bump the global generation: every cached list and count becomes unreachable at once
        (repairs, audits and writes whose before-image is unknown; request writes are finer,
        queries.py). token: the write's mark, which this finishes for the catalog."""
        return self.cache.finish_catalog_write(self.keys.writes_in_flight, self.keys.generation, (), token, True)

    def fill_leased(
        self, product_ids: Sequence[str], load: Callable[[list[str]], dict[str, ProductRecord]], lease_ttl_ms: int
    ) -> LeasedFills:
        """Rewrite these entries from the database whether cached or not, with leases like read misses:
        each lease is taken before the (one) database query, so a write or tombstone after the query
        revokes it and nothing older than that write lands. Jobs that rewrite entries use this."""
        fills = LeasedFills()
        held: dict[str, str] = {}
        try:
            # Every lease in one round trip: taken one by one on a slow Redis, the first would
            # expire before the batch's fills land.
            leases = self.cache.acquire_locks([self.keys.product(pid).lease for pid in product_ids], lease_ttl_ms)
            for pid, token in zip(product_ids, leases, strict=True):
                if token:
                    held[pid] = token
                else:
                    fills.busy.append(pid)  # a read miss is filling it from a database read of its own
            tokens = dict(held)
            records = load(list(tokens)) if tokens else {}
            for pid, token in tokens.items():
                record = records.get(pid)
                if record is None:
                    self.cache.release_lock(self.keys.product(pid).lease, token)
                    fills.absent.append(pid)
                elif self.fill(pid, token, record):  # the fill spends the lease, landed or not
                    fills.landed.append(pid)
                else:
                    fills.refused[pid] = record
                del held[pid]
        finally:
            # A failed run (Redis or MongoDB) hands back the leases it still holds rather than
            # keeping read misses of those products from filling until the leases expire.
            for pid, token in held.items():
                with contextlib.suppress(CacheError):
                    self.cache.release_lock(self.keys.product(pid).lease, token)
        return fills


@dataclass
class LeasedFills:
    """What fill_leased did with each id."""

    landed: list[str] = field(default_factory=list)  # the database state was written
    refused: dict[str, ProductRecord] = field(default_factory=dict)  # read, not written: newer cached or lease lost
    absent: list[str] = field(default_factory=list)  # not in the database
    busy: list[str] = field(default_factory=list)  # another filler held the lease: neither read nor written
