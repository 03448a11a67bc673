"""The catalog cache: every cached read of products, list pages, counts and the category list.

One read-through entry point (get_or_create, dogpile's shape): a hit is served as stored; on a miss
one caller takes the key's lock (for products, the fill lease) and fills from MongoDB while others
wait briefly for it. Redis errors make a read a database read (X-Cache: BYPASS), never an error.
Lists, counts and categories live under their filters' generations (docs/cache.md). Writes: catalog_writes.py.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from jollyjet.cache.fence import RepairFence, RepairLog
from jollyjet.cache.keys import CacheKeys, PopularityTracker, TtlPolicy, query_hash
from jollyjet.cache.store import CacheBackend, CacheError, CacheEvents, VersionedEntry
from jollyjet.products.catalog_writes import CatalogWrites, ProductCacheWriter
from jollyjet.products.record import (
    DECODE_ERRORS,
    CacheStatus,
    CategoryCount,
    PageOfBodies,
    ProductBody,
    ProductQuery,
    Read,
    aspects,
    body_of,
    filters_member,
    is_product_id,
    names,
    page_of,
)
from jollyjet.products.repository import MongoProductRepository

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")
_FIRST_POLL_S = 0.001
_MAX_POLL_S = 0.02
_ABSENT: Any = object()
# How long past its expiry a result's filters stay registered, beyond the longest result TTL.
_REGISTRATION_MARGIN_S = 60


@dataclass(frozen=True)
class CachePolicy:
    """TTLs and timings of the catalog cache: the TTLs and write_mark_ms from settings, the rest fixed here."""

    product_ttl_s: int = 3600
    list_ttl_s: int = 300
    tombstone_ttl_s: int = 60  # how long a deleted product's tombstone blocks late fills
    lease_ttl_ms: int = 2000  # fill lease / single-flight lock lifetime (longer than a slow MongoDB read)
    fill_wait_ms: int = 250  # how long a reader waits for another's fill before reading MongoDB itself
    # Longer than any MongoDB call can take (db.socket_timeout_ms): a fill after a lapse reads the write's outcome.
    write_mark_ms: int = 11000


class PageMovedOn(ValueError):
    """A stored page one of whose items changed since it was stored: a miss, not damage."""


class CachedProductRepository(CatalogWrites):
    """The catalog cache over the product repository: what views, commands and jobs call when the cache is on."""

    def __init__(
        self,
        inner: MongoProductRepository,
        cache: CacheBackend,
        keys: CacheKeys,
        ttl: TtlPolicy,
        policy: CachePolicy,
        repairs: RepairLog,
        events: CacheEvents,
        popularity: PopularityTracker | None = None,
        fence: RepairFence | None = None,
    ) -> None:
        self.inner, self.cache, self.keys, self.ttl, self.policy = inner, cache, keys, ttl, policy
        self.events, self.popularity = events, popularity
        # No hit for a product (or any list, count, categories) whose failed cache write awaits its replay.
        self.fence = fence
        self.writer = ProductCacheWriter(cache, keys, ttl, policy, repairs, events, fence)
        # A registration outlives every result filled under it (the fill extends it by this much).
        longest_result_s = policy.list_ttl_s * (1 + ttl.jitter) + _REGISTRATION_MARGIN_S
        self.horizon_ms = int(longest_result_s * 1000) + policy.lease_ttl_ms

    # --- the read-through ---------------------------------------------------------------
    def get_or_create(
        self,
        kind: str,
        lock_key: str,
        lookup: Callable[[], R | None],
        decode: Callable[[R], T],
        compute: Callable[[], T],
        fill: Callable[[str, T], bool],
    ) -> Read[T]:
        """A hit, one caller's fill under lock_key, a wait for another's, or MongoDB (decode raises for a miss)."""
        # Each read emits exactly one outcome (hit, wait_hit, miss or bypass) where it is decided,
        # so the outcome counts add up to the reads (the hit-ratio metric).
        try:
            found = self._decoded(kind, decode, lookup())
            if found is not _ABSENT:
                self.events.emit("hit", kind)
                return Read(found, CacheStatus.HIT)
            token = self.cache.acquire_lock(lock_key, self.policy.lease_ttl_ms)
        except CacheError:
            return self._bypass(kind, compute)
        try:
            # Unlocked, another request is reading the database for this key: wait briefly for its fill.
            # Locked, a filler may have finished between our miss and our lock: look once more.
            with contextlib.suppress(CacheError):  # decoding a page reads its items' entries
                found = self._decoded(kind, decode, self._wait(lookup) if token is None else lookup())
            if found is not _ABSENT:
                self.events.emit("wait_hit", kind)
                return Read(found, CacheStatus.HIT)
            self.events.emit("miss", kind)
            value = self._from_db(kind, compute)
            if token is not None:
                with contextlib.suppress(CacheError):  # the read is served; a later read fills
                    self.events.emit("fill" if fill(token, value) else "fill_rejected", kind)
            return Read(value, CacheStatus.MISS)
        finally:
            if token is not None:
                with contextlib.suppress(CacheError):  # it expires by itself
                    self.cache.release_lock(lock_key, token)

    @staticmethod
    def _decoded(kind: str, decode: Callable[[R], T], raw: R | None) -> T:
        """The cached value, or _ABSENT for nothing cached or undecodable bytes (treated as a miss)."""
        if raw is None:
            return _ABSENT
        try:
            return decode(raw)
        except PageMovedOn as moved:  # writes move pages on all the time: routine, not worth a warning
            log.debug("cached %s moved on (%s); treating it as a miss", kind, moved)
        except DECODE_ERRORS:
            log.warning("undecodable %s cache entry; treating it as a miss", kind)
        return _ABSENT

    def _wait(self, probe: Callable[[], R | None]) -> R | None:
        """Poll probe until it returns a value or fill_wait_ms passes; cache errors end the wait."""
        deadline = time.monotonic() + self.policy.fill_wait_ms / 1000
        pause = _FIRST_POLL_S
        while time.monotonic() < deadline:
            time.sleep(pause)
            pause = min(pause * 2, _MAX_POLL_S)  # back off: many waiters on one hot key must not hammer Redis
            try:
                value = probe()
            except CacheError:
                return None
            if value is not None:
                return value
        return None

    def _from_db(self, kind: str, compute: Callable[[], T]) -> T:
        """Read the database, counting it (the metric behind "DB queries saved")."""
        self.events.emit("db_read", kind)
        return compute()

    def _bypass(self, kind: str, compute: Callable[[], T], fenced: bool = False) -> Read[T]:
        """Serve from MongoDB without the cache: Redis failed, the breaker is open, or (fenced) a replay is pending."""
        if fenced:
            self.events.emit("fenced", kind)
        self.events.emit("bypass", kind)
        return Read(self._from_db(kind, compute), CacheStatus.BYPASS)

    # --- products -----------------------------------------------------------------------
    def get_body(self, product_id: str) -> Read[ProductBody | None]:
        """The product's API body; a hit is the stored bytes as they are, after one HMGET."""
        if not is_product_id(product_id):
            return Read(None, CacheStatus.BYPASS)
        keys = self.keys.product(product_id)

        def compute() -> ProductBody | None:
            record = self.inner.get(product_id).value
            return None if record is None else body_of(record)

        def decode(entry: VersionedEntry) -> ProductBody | None:
            if entry.payload is None:
                return None  # a tombstone: deleted moments ago
            if not names(product_id, entry.payload):
                raise ValueError("the entry does not hold this product's body")
            return ProductBody(entry.version, entry.payload)

        def fill(token: str, rendered: ProductBody | None) -> bool:
            # Unknown ids are cached as absent too: otherwise every read of one costs a query.
            if rendered is None:
                return self.writer.fill_absent(product_id, token)
            return self.writer.fill(product_id, token, rendered)

        def lookup() -> VersionedEntry | None:
            entry = self.cache.get_versioned(keys.entry)
            # In doubt (a write of it is in flight, or went unanswered): a miss, never served.
            return None if entry is None or entry.pending else entry

        if self.fence is not None and not self.fence.allows_product(product_id):
            read = self._bypass("product", compute, fenced=True)
        else:  # the fill lease doubles as the single-flight lock
            read = self.get_or_create("product", keys.lease, lookup, decode, compute, fill)
        if read.value is not None and self.popularity is not None:
            self.popularity.product_read(product_id)
        return read

    # --- lists, counts, categories ------------------------------------------------------
    def list_bodies(self, query: ProductQuery) -> Read[PageOfBodies]:
        """One page as its items' bodies: the ids and total from the list entry, the bodies from product entries."""
        read = self.warm_query(query)
        # Counted after the read: a request that failed (MongoDB down) writes nothing to Redis.
        if self.popularity is not None:
            self.popularity.query_read(query.normalized())
        return read

    def warm_query(self, query: ProductQuery) -> Read[PageOfBodies]:
        """A list page through the cache without counting it as a client read (cache warming)."""
        return self._result(
            "list",
            query,
            lambda: page_of(self.inner.list_page(query).value),
            # Stored as ids (with the versions read) and total; the bodies come from the product entries.
            lambda page: orjson.dumps({"ids": page.ids, "versions": page.versions, "total": page.total}),
            self._page_from_ids,
        )

    def count(self, query: ProductQuery) -> Read[int]:
        """How many products match the query's filters."""
        return self._result(
            "count", query, lambda: self.inner.count(query).value, orjson.dumps, lambda raw: int(orjson.loads(raw))
        )

    def categories(self) -> Read[list[CategoryCount]]:
        """Every category with its product count: a cached result of the unfiltered set, like a count."""
        return self._result(
            "categories",
            ProductQuery(),
            lambda: self.inner.categories().value,
            lambda rows: orjson.dumps([[r.category, r.count] for r in rows]),
            lambda raw: [CategoryCount(category=c, count=n) for c, n in orjson.loads(raw)],
        )

    def _result(
        self,
        kind: str,
        query: ProductQuery,
        compute: Callable[[], T],
        encode: Callable[[T], bytes],
        decode: Callable[[bytes], T],
    ) -> Read[T]:
        """A list page, count or category list (for "categories" the unfiltered query) through get_or_create."""
        if self.fence is not None and not self.fence.allows_results():
            # No list or count hit while any failed cache write awaits its replay.
            return self._bypass(kind, compute, fenced=True)
        filters = query.filters()
        member = filters_member(filters)
        keys, registry = self.keys, self.keys.filter_registry
        filter_keys = [keys.filter_generation(filters, a) for a in aspects(kind, query)]
        normalized = query.normalized() if kind == "list" else filters
        prefix, digest = keys.query_result_prefix(kind), query_hash(normalized)
        try:
            # One round trip: registration, generations and the result stored under them.
            generations, cached = self.cache.read_filtered(
                keys.generation, registry, keys.writes_in_flight, filter_keys, member, self.horizon_ms, prefix, digest
            )
        except CacheError:
            return self._bypass(kind, compute)
        key = keys.query_result(kind, generations[0], normalized, generations[1:])
        first_lookup = [cached]

        def lookup() -> bytes | None:
            # The script's answer serves the first look; later ones (after a lock or a wait) ask again.
            return first_lookup.pop() if first_lookup else self.cache.get(key)

        def fill(_token: str, value: T) -> bool:
            payload, ttl_s = encode(value), self.ttl.seconds(self.policy.list_ttl_s)
            return self.cache.fill_filtered(
                keys.generation, registry, key, filter_keys, generations, member, self.horizon_ms, payload, ttl_s
            )

        def checked(raw: bytes) -> T:
            # A page whose items moved on (rewritten by writes that finished) is served only once stored
            # again under the generations it was read with: proof no write changed it since.
            value = decode(raw)
            if isinstance(value, PageOfBodies) and value.moved_on and not fill("", value):
                raise PageMovedOn(f"a {kind} result's generations moved while its parts were read")
            return value

        return self.get_or_create(kind, keys.fill_lock(key), lookup, checked, compute, fill)

    def _page_from_ids(self, raw: bytes) -> PageOfBodies:
        """A stored page (ids, total) with its items' bodies from their entries; PageMovedOn if one changed."""
        stored = orjson.loads(raw)
        ids, total, versions = stored["ids"], stored["total"], stored.get("versions")
        well_formed = isinstance(ids, list) and isinstance(total, int) and isinstance(versions, list)
        if not well_formed or len(versions) != len(ids):
            raise TypeError("not a stored page with its items' versions")
        entry_keys = [self.keys.product(pid).entry for pid in ids]  # ValueError for anything but ids
        entries = self.cache.get_versioned_many(entry_keys)
        missing = [pid for pid, entry in zip(ids, entries, strict=True) if entry is None or entry.pending]
        if missing:
            # Items expired or evicted before the page: filled like read misses (leases, one query).
            self.writer.fill_missing(missing, lambda pids: self._from_db("product", lambda: self.inner.get_many(pids)))
            entries = self.cache.get_versioned_many(entry_keys)
        bodies, moved_on = [], False
        for pid, entry, version in zip(ids, entries, versions, strict=True):
            if entry is None or entry.pending or entry.payload is None or not names(pid, entry.payload):
                raise PageMovedOn("a page item is gone")  # deleted, in doubt or unreadable since stored
            if entry.version < version or (entry.version > version and not entry.settled):
                # The page's ids, order and total are one state of MongoDB: an older item entry (its write's
                # cache update has not landed) or a newer unsettled one (its write may not have invalidated
                # this page yet) would show a state that never was.
                raise PageMovedOn("a page item's entry is not the page's version")
            # Newer and settled: that write finished invalidating, before this page was read or after;
            # storing the page again under the generations it was read with tells which.
            moved_on = moved_on or entry.version > version
            bodies.append(entry.payload)
        served_versions = [entry.version for entry in entries if entry is not None]
        return PageOfBodies(ids, bodies, total, versions=served_versions, moved_on=moved_on)


# What services.products is: the catalog cache, or (the cache switched off) MongoDB's behind the bulkhead.
Catalog = CachedProductRepository | MongoProductRepository
