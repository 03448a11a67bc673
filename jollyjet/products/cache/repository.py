"""CachedProductRepository: the Redis write-through cache around the Mongo repository.

Every cached read and every invalidation of the product catalog happens here:
Reads: cache first; on a miss one request fills (a lease for products, a lock for
lists/counts) while concurrent requests wait briefly for its result (read_through.py).
The category list is memoized with Flask-Caching (categories.py).
Writes: MongoDB first, then the version-guarded cache write and a generation bump
(writer.py), then the category memo is dropped; a cache failure never fails the
write — it is recorded for the repair job.
Redis errors anywhere turn into database reads (X-Cache: BYPASS).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from jollyjet.cache.backend import CacheBackend, CacheError
from jollyjet.cache.events import CacheEvents
from jollyjet.cache.fence import RepairFence
from jollyjet.cache.keys import CacheKeys
from jollyjet.cache.popularity import PopularityTracker
from jollyjet.cache.repair_log import RepairLog
from jollyjet.cache.ttl import TtlPolicy
from jollyjet.products.cache import codec
from jollyjet.products.cache.categories import CategoryMemo
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
from jollyjet.products.repository import ProductRepository

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
        categories_memo: CategoryMemo | None = None,
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
        self.categories_memo = categories_memo
        # No hit for a product (or any list, count, categories) whose failed cache write awaits its replay.
        self.fence = fence
        self.writer = ProductCacheWriter(cache, keys, ttl, policy.product_ttl_s, policy.tombstone_ttl_s)
        self.reader = ReadThrough(cache, events, policy.lease_ttl_ms, policy.fill_wait_ms)

    # --- reads ------------------------------------------------------------------------
    def get(self, product_id: str) -> Read[ProductRecord | None]:
        if object_id(product_id) is None:
            return Read(None, CacheStatus.BYPASS)
        keys = self.keys.product(product_id)

        def fill(token: str, record: ProductRecord | None) -> bool:
            # Unknown ids are not cached.
            return record is not None and self.writer.fill(product_id, token, record)

        def compute() -> ProductRecord | None:
            return self.inner.get(product_id).value

        if self.fence is not None and not self.fence.allows_product(product_id):
            read = self._fenced("product", compute)
        else:
            read = self.reader.read(
                CachedValue(
                    kind="product",
                    lookup=lambda: self.cache.get_versioned(keys.entry),
                    decode=codec.decode_entry,
                    lock_key=keys.lease,  # the fill lease doubles as the single-flight lock
                    compute=compute,
                    fill=fill,
                )
            )
        if read.value is not None and self.popularity is not None:
            self.popularity.product_read(product_id)
        return read

    def get_many(self, product_ids: list[str]) -> dict[str, ProductRecord]:
        return self.inner.get_many(product_ids)

    def list_page(self, query: ProductQuery) -> Read[ProductPage]:
        read = self.warm_query(query)
        # Counted after the read: a request that failed (MongoDB down) writes nothing to Redis.
        if self.popularity is not None:
            self.popularity.query_read(query.normalized())
        return read

    def warm_query(self, query: ProductQuery) -> Read[ProductPage]:
        """A list page through the cache without counting it as a client read (cache warming)."""
        return self._generational("list", query.normalized(), lambda: self.inner.list_page(query).value, codec.PAGE)

    def warm_products(self, product_ids: list[str]) -> int:
        """Fill the missing entries of these products (leases, one database query); how many landed."""
        return self.writer.fill_missing(product_ids, self.inner.get_many, self.policy.lease_ttl_ms)

    def count(self, query: ProductQuery) -> Read[int]:
        return self._generational("count", query.filters(), lambda: self.inner.count(query).value, codec.COUNT)

    def categories(self) -> Read[list[CategoryCount]]:
        if self.categories_memo is None:
            return self._categories_from_db()
        if self.fence is not None and not self.fence.allows_results():
            self.events.emit("fenced", "categories")
            self.events.emit("bypass", "categories")  # its outcome: one per read, like every cached read
            return Read(self._categories_from_db().value, CacheStatus.BYPASS)
        return self.categories_memo.get_or_compute(lambda: self._categories_from_db().value)

    def _categories_from_db(self) -> Read[list[CategoryCount]]:
        self.events.emit("db_read", "categories")
        return self.inner.categories()

    def _generational(
        self, kind: str, normalized: dict[str, Any], compute: Callable[[], T], value_codec: codec.Codec[T]
    ) -> Read[T]:
        if self.fence is not None and not self.fence.allows_results():
            return self._fenced(kind, compute)
        try:
            generation = self.cache.get_generation(self.keys.generation)
        except CacheError:
            return self.reader.bypass(kind, compute)
        key = self.keys.query_result(kind, generation, normalized)

        def fill(_token: str, value: T) -> bool:
            ttl_s = self.ttl.seconds(self.policy.list_ttl_s)
            return self.cache.fill_generational(self.keys.generation, generation, key, value_codec.encode(value), ttl_s)

        return self.reader.read(
            CachedValue(
                kind=kind,
                lookup=lambda: self.cache.get(key),
                decode=value_codec.decode,
                lock_key=self.keys.fill_lock(key),
                compute=compute,
                fill=fill,
            )
        )

    def _fenced(self, kind: str, compute: Callable[[], T]) -> Read[T]:
        """Served from MongoDB without touching the cache: a replay is pending (or the fence cannot tell)."""
        self.events.emit("fenced", kind)
        return self.reader.bypass(kind, compute)

    # --- writes ---------------------------------------------------------------------
    def create(self, values: dict[str, Any]) -> ProductRecord:
        record = self.inner.create(values)
        self._write_through(record)
        self._drop_categories()
        return record

    def update(self, product_id: str, values: dict[str, Any], expected_version: int | None) -> ProductRecord:
        record = self.inner.update(product_id, values, expected_version)
        self._write_through(record)
        self._drop_categories()
        return record

    def delete(self, product_id: str, expected_version: int | None) -> ProductRecord:
        record = self.inner.delete(product_id, expected_version)
        try:
            self.writer.tombstone(record.id, record.version)
            self.writer.invalidate_lists()
        except CacheError as error:
            self._record_failure(record.id, "delete", error)
        self._drop_categories()
        return record

    def _write_through(self, record: ProductRecord) -> None:
        try:
            written = self.writer.write(record)
            self.writer.invalidate_lists()
            self.events.emit("write_through" if written else "write_refused", "product")
        except CacheError as error:
            self._record_failure(record.id, "write", error)

    def _drop_categories(self) -> None:
        # Apart from the generation bump: the memo lives in Flask-Caching, behind its own breaker check.
        if self.categories_memo is not None:
            self.categories_memo.invalidate()

    def _record_failure(self, product_id: str, operation: str, error: CacheError) -> None:
        self.events.emit("write_failure", "product")
        log.warning("cache %s for product %s failed after the database commit: %s", operation, product_id, error)
        recorded = self.repairs.record(product_id, f"{operation}: {type(error).__name__}")
        if recorded and self.fence is not None:
            self.fence.note_failure(product_id)
            # The client hears of this write only once every process's fence includes it.
            self.fence.commit_wait()
