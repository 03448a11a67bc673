"""CachedProductRepository: the Redis write-through cache around the Mongo repository.

Every cached read and every invalidation of the product catalog happens here:
Reads: cache first; on a miss one request fills (a lease for products, a lock for
lists, counts and the category list) while concurrent requests wait briefly for its
result (read_through.py, queries.py).
Writes: MongoDB first, then the version-guarded cache write and the bump of what the
write changed (writer.py, queries.py); a cache failure never fails the write — it is
recorded for the repair job.
Redis errors anywhere turn into database reads (X-Cache: BYPASS).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from jollyjet.cache.events import CacheEvents, PopularityTracker
from jollyjet.cache.fence import RepairFence, RepairLog
from jollyjet.cache.keys import CacheKeys, TtlPolicy
from jollyjet.cache.store import CacheBackend, CacheError, VersionedEntry
from jollyjet.products import body
from jollyjet.products.body import PageOfBodies, ProductBody
from jollyjet.products.cache import codec
from jollyjet.products.cache.queries import QueryResults
from jollyjet.products.cache.read_through import CachedValue, ReadThrough
from jollyjet.products.cache.writer import ProductCacheWriter
from jollyjet.products.domain import (
    CacheStatus,
    CategoryCount,
    ProductPage,
    ProductQuery,
    ProductRecord,
    Read,
    object_id,
)
from jollyjet.products.repository import (
    DatabaseUnavailable,
    DuplicateSku,
    ProductNotFound,
    ProductRepository,
    VersionConflict,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class CachePolicy:
    """TTLs and timings of the cached repository (from settings)."""

    product_ttl_s: int = 3600
    list_ttl_s: int = 300
    tombstone_ttl_s: int = 60
    lease_ttl_ms: int = 2000
    fill_wait_ms: int = 250
    # How long a write's mark lasts: longer than any MongoDB call can take (db.py's socket
    # timeout), so a fill after a lapse reads the write's outcome, whatever it was.
    write_mark_ms: int = 11000


class CachedProductRepository:
    """Decorator over a ProductRepository (normally MongoProductRepository)."""

    def __init__(
        self,
        inner: ProductRepository,
        cache: CacheBackend,
        keys: CacheKeys,
        ttl: TtlPolicy,
        policy: CachePolicy,
        repairs: RepairLog,
        events: CacheEvents,
        popularity: PopularityTracker | None = None,
        fence: RepairFence | None = None,
    ) -> None:
        self.inner = inner
        self.cache = cache
        self.keys = keys
        self.ttl = ttl
        self.policy = policy
        self.repairs = repairs
        self.events = events
        self.popularity = popularity
        # No hit for a product (or any list, count, categories) whose failed cache write awaits its replay.
        self.fence = fence
        self.writer = ProductCacheWriter(cache, keys, ttl, policy.product_ttl_s, policy.tombstone_ttl_s)
        self.reader = ReadThrough(cache, events, policy.lease_ttl_ms, policy.fill_wait_ms)
        self.queries = QueryResults(cache, keys, ttl, self.reader, policy.list_ttl_s, policy.lease_ttl_ms)
        # A page is stored as ids (with the versions it was read at) and total; its items'
        # bodies come from the product entries.
        self._page_codec: codec.Codec[PageOfBodies] = codec.Codec(
            lambda page: {"ids": page.ids, "versions": page.versions, "total": page.total}, self._page_from_ids
        )

    # --- reads ------------------------------------------------------------------------
    def get(self, product_id: str) -> Read[ProductRecord | None]:
        read = self.get_body(product_id)
        if read.value is None:
            return Read(None, read.source)
        if read.value.record is not None:
            return Read(read.value.record, read.source)
        try:
            return Read(body.parse(read.value.body), read.source)
        except codec.DECODE_ERRORS:  # names() passed but the rest is damaged: ask the source of truth
            log.warning("undecodable product cache entry; reading the database")
            return self.reader.bypass("product", lambda: self.inner.get(product_id).value)

    def get_body(self, product_id: str) -> Read[ProductBody | None]:
        """The product's API body; a hit is the stored bytes as they are, after one HMGET."""
        if object_id(product_id) is None:
            return Read(None, CacheStatus.BYPASS)
        entry = self._product_entry(product_id)
        if self.fence is not None and not self.fence.allows_product(product_id):
            read = self._fenced("product", entry.compute)
        else:
            read = self.reader.read(entry)
        if read.value is not None and self.popularity is not None:
            self.popularity.product_read(product_id)
        return read

    def _product_entry(self, product_id: str) -> CachedValue[VersionedEntry, ProductBody | None]:
        """How a product is looked up (the hit path: one HMGET), computed and filled."""
        keys = self.keys.product(product_id)

        def decode(entry: VersionedEntry) -> ProductBody | None:
            if entry.payload is None:
                return None  # a tombstone: deleted moments ago
            if not body.names(product_id, entry.payload):
                raise ValueError("the entry does not hold this product's body")
            return ProductBody(entry.version, entry.payload)

        def compute() -> ProductBody | None:
            record = self.inner.get(product_id).value
            return None if record is None else body.of(record)

        def fill(token: str, rendered: ProductBody | None) -> bool:
            # Unknown ids are cached as absent too: otherwise every read of one costs a query.
            if rendered is None:
                return self.writer.fill_absent(product_id, token)
            return self.writer.fill_body(product_id, token, rendered)

        def lookup() -> VersionedEntry | None:
            entry = self.cache.get_versioned(keys.entry)
            # In doubt (a write of it is in flight, or went unanswered): a miss, never served.
            return None if entry is None or entry.pending else entry

        return CachedValue(
            kind="product",
            lookup=lookup,
            decode=decode,
            lock_key=keys.lease,  # the fill lease doubles as the single-flight lock
            compute=compute,
            fill=fill,
        )

    def get_many(self, product_ids: list[str]) -> dict[str, ProductRecord]:
        return self.inner.get_many(product_ids)

    def list_page(self, query: ProductQuery) -> Read[ProductPage]:
        read = self.list_bodies(query)
        page = read.value
        records = page.records if page.records is not None else [body.parse(b) for b in page.bodies]
        return Read(ProductPage(items=records, total=page.total), read.source)

    def list_bodies(self, query: ProductQuery) -> Read[PageOfBodies]:
        """One page as its items' bodies: the ids and total from the list entry, the bodies from product entries."""
        read = self.warm_query(query)
        # Counted after the read: a request that failed (MongoDB down) writes nothing to Redis.
        if self.popularity is not None:
            self.popularity.query_read(query.normalized())
        return read

    def warm_query(self, query: ProductQuery) -> Read[PageOfBodies]:
        """A list page through the cache without counting it as a client read (cache warming)."""

        def compute() -> PageOfBodies:
            page = self.inner.list_page(query).value
            return body.page_of((page.items, page.total))

        if self._results_fenced():
            return self._fenced("list", compute)
        return self.queries.read("list", query, compute, self._page_codec, moved_on=lambda page: page.moved_on)

    def warm_products(self, product_ids: list[str]) -> int:
        """Fill the missing entries of these products (leases, one database query); how many landed."""
        return self.writer.fill_missing(product_ids, self.inner.get_many, self.policy.lease_ttl_ms)

    def count(self, query: ProductQuery) -> Read[int]:
        def compute() -> int:
            return self.inner.count(query).value

        if self._results_fenced():
            return self._fenced("count", compute)
        return self.queries.read("count", query, compute, codec.COUNT)

    def _page_from_ids(self, raw: Any) -> PageOfBodies:
        """A stored page (ids, total) with its items' bodies from their entries; PageMovedOn if one changed."""
        ids, total, versions = raw["ids"], raw["total"], raw.get("versions")
        if not isinstance(ids, list) or not isinstance(total, int):
            raise TypeError("not a stored page")
        if not isinstance(versions, list) or len(versions) != len(ids):
            raise TypeError("a stored page without its items' versions")
        entry_keys = [self.keys.product(pid).entry for pid in ids]  # ValueError for anything but ids
        entries = self.cache.get_versioned_many(entry_keys)
        missing = [pid for pid, entry in zip(ids, entries, strict=True) if entry is None or entry.pending]
        if missing:
            # Items expired or evicted before the page: filled like read misses (leases, one query).
            self.writer.fill_missing(missing, self._load_products, self.policy.lease_ttl_ms)
            entries = self.cache.get_versioned_many(entry_keys)
        bodies, moved_on = [], False
        for pid, entry, version in zip(ids, entries, versions, strict=True):
            if entry is None or entry.pending or entry.payload is None or not body.names(pid, entry.payload):
                # Deleted, in doubt (or unreadable) since the page was stored: recompute the page.
                raise codec.PageMovedOn("a page item is gone")
            if entry.version < version or (entry.version > version and not entry.settled):
                # The page's ids, order and total are one state of MongoDB; an item entry of
                # another version belongs to another state. Older: the page was read after a
                # write whose cache update has not landed yet. Newer and unsettled: a write
                # landed its entry and may not have invalidated this page yet. Either mix shows
                # a state that never was: recompute.
                raise codec.PageMovedOn("a page item's entry is not the page's version")
            # Newer and settled: that write finished invalidating, before this page was read or
            # after; storing the page again under the generations it was read with tells which.
            moved_on = moved_on or entry.version > version
            bodies.append(entry.payload)
        served_versions = [entry.version for entry in entries if entry is not None]
        return PageOfBodies(ids, bodies, total, versions=served_versions, moved_on=moved_on)

    def _load_products(self, product_ids: list[str]) -> dict[str, ProductRecord]:
        return self.reader.from_db("product", lambda: self.inner.get_many(product_ids))

    def categories(self) -> Read[list[CategoryCount]]:
        """The category list as a cached result of the unfiltered set, like a count (queries.py)."""

        def compute() -> list[CategoryCount]:
            return self.inner.categories().value

        if self._results_fenced():
            return self._fenced("categories", compute)
        return self.queries.read("categories", ProductQuery(), compute, codec.CATEGORIES)

    def _fenced(self, kind: str, compute: Callable[[], T]) -> Read[T]:
        """Served from MongoDB without touching the cache: a replay is pending (or the fence cannot tell)."""
        self.events.emit("fenced", kind)
        return self.reader.bypass(kind, compute)

    def _results_fenced(self) -> bool:
        """No list or count hit while any failed cache write awaits its replay (the recovery fence)."""
        return self.fence is not None and not self.fence.allows_results()

    # --- writes ---------------------------------------------------------------------
    # Each write marks itself in Redis before MongoDB sees it (writer.mark): until its cache
    # update lands, or its mark lapses after the longest a MongoDB call can take, the product
    # is read from MongoDB and a lapse invalidates every list. So a write whose outcome nobody
    # heard of (a lost reply, a process killed between the commit and the cache write) never
    # leaves an older state served.

    def create(self, values: dict[str, Any]) -> ProductRecord:
        token = self._mark(None)
        record = self._in_mongodb(None, token, lambda: self.inner.create(values))
        self._write_through(record, token, created=True)
        return record

    def update(self, product_id: str, values: dict[str, Any], expected_version: int | None) -> ProductRecord:
        token = self._mark(product_id)
        record = self._in_mongodb(product_id, token, lambda: self.inner.update(product_id, values, expected_version))
        self._write_through(record, token)
        return record

    def delete(self, product_id: str, expected_version: int | None) -> ProductRecord:
        token = self._mark(product_id)
        record = self._in_mongodb(product_id, token, lambda: self.inner.delete(product_id, expected_version))
        try:
            self.writer.tombstone(record.id, record.version, token)
            self.queries.invalidate(record, None, token)
        except CacheError as error:
            self._record_failure(record.id, "delete", error)
        return record

    def _mark(self, product_id: str | None) -> str:
        """The write's token, marked in Redis; '' when Redis could not be marked."""
        if product_id is not None and object_id(product_id) is None:
            return ""  # not an id MongoDB can hold: the write answers 404, nothing is cached for it
        token = secrets.token_hex(8)
        try:
            self.writer.mark(product_id, token, self.policy.write_mark_ms)
        except CacheError as error:
            # Redis is failing: the cache update after the commit will most likely fail too, and
            # is then recorded for repair, as before marks existed. Recording it here, before the
            # commit, would let a repair run between the two and re-cache the old version.
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
                with contextlib.suppress(CacheError):  # the marks lapse by themselves
                    self.writer.abandon(product_id, token)
            raise

    def _in_doubt(self, product_id: str | None, token: str) -> None:
        """The write's outcome is unknown (a timeout after the command was sent): the product stays in
        doubt until its mark lapses; lists and counts are invalidated now, not at the lapse. Unmarked
        (Redis failing) or unable to invalidate: recorded for repair, as a failed cache update is."""
        try:
            if not token:
                raise CacheError("the write was not marked")
            self.writer.invalidate_lists(token)
        except CacheError as error:
            if product_id is not None:
                self._record_failure(product_id, "uncertain write", error)

    def _write_through(self, record: ProductRecord, token: str, created: bool = False) -> None:
        try:
            written, before = self.writer.write_through(record, "" if created else token)
            if created:
                self.queries.invalidate(None, record, token)
            elif before is None:
                self.writer.invalidate_lists(token)  # the state before the write is unknown: every list and count
            else:
                self.queries.invalidate(before, record, token)
            self.events.emit("write_through" if written else "write_refused", "product")
        except CacheError as error:
            self._record_failure(record.id, "write", error)
            return
        # Only now may this version be the next write's before-image (scripts.SWAP_VERSIONED):
        # a write that compared against it earlier could answer its client before this one
        # had invalidated what it changed. Unmarked, the next write invalidates everything.
        with contextlib.suppress(CacheError):
            self.writer.settle(record.id, record.version)

    def _record_failure(self, product_id: str, operation: str, error: CacheError) -> None:
        self.events.emit("write_failure", "product")
        log.warning("cache %s for product %s failed after the database commit: %s", operation, product_id, error)
        recorded = self.repairs.record(product_id, f"{operation}: {type(error).__name__}")
        if recorded and self.fence is not None:
            self.fence.note_failure(product_id)
            # The client hears of this write only once every process's fence includes it.
            self.fence.commit_wait()
