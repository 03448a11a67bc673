"""CachedProductRepository: the Redis write-through cache around the Mongo repository.

Reads: cache first; on a miss one request fills (a lease for products, a lock for
lists/counts) while concurrent requests wait briefly for its result.
Writes: MongoDB first, then the version-guarded cache write and a generation bump;
a cache failure never fails the write — it is recorded for the repair job.
Redis errors anywhere turn into database reads (X-Cache: BYPASS).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from jollyjet.cache import serialization
from jollyjet.cache.backend import CacheBackend, CacheError, VersionedEntry
from jollyjet.cache.events import CacheEvents
from jollyjet.cache.keys import CacheKeys, ProductKeys
from jollyjet.cache.repair_log import RepairLog
from jollyjet.cache.ttl import TtlPolicy
from jollyjet.products.mongo_repository import object_id
from jollyjet.products.record import (
    CacheStatus,
    CategoryCount,
    ProductPage,
    ProductQuery,
    ProductRecord,
    Read,
)
from jollyjet.products.repository import ProductRepository

log = logging.getLogger(__name__)
T = TypeVar("T")
_POLL_S = 0.002


@dataclass(frozen=True)
class CachePolicy:
    """TTLs and timings of the cached repository (from settings)."""

    product_ttl_s: int = 3600
    list_ttl_s: int = 300
    tombstone_ttl_s: int = 60
    lease_ttl_ms: int = 2000
    fill_wait_ms: int = 50


def encode_record(record: ProductRecord) -> bytes:
    """Product → cache bytes."""
    return serialization.dumps(record.to_dict())


def decode_record(data: bytes) -> ProductRecord:
    """Cache bytes → product."""
    return ProductRecord.from_dict(serialization.loads(data))


def _encode_page(page: ProductPage) -> bytes:
    return serialization.dumps({"items": [r.to_dict() for r in page.items], "total": page.total})


def _decode_page(data: bytes) -> ProductPage:
    raw = serialization.loads(data)
    return ProductPage(items=[ProductRecord.from_dict(r) for r in raw["items"]], total=raw["total"])


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
    ) -> None:
        self.inner = inner
        self.cache = cache
        self.keys = keys
        self.ttl = ttl
        self.policy = policy
        self.repairs = repairs
        self.events = events

    # --- single product ---------------------------------------------------------
    def get(self, product_id: str) -> Read[ProductRecord | None]:
        if object_id(product_id) is None:
            return Read(None, CacheStatus.BYPASS)
        keys = self.keys.product(product_id)
        try:
            entry = self.cache.get_versioned(keys.entry)
        except CacheError:
            return Read(self._db_get(product_id), self._bypass("product"))
        if entry is not None:
            cached = self._decode_entry(entry)
            if cached is not _UNDECODABLE:
                self.events.emit("hit", "product")
                return Read(cached, CacheStatus.HIT)  # type: ignore[arg-type]
        self.events.emit("miss", "product")
        return self._fill_product(product_id, keys)

    def _decode_entry(self, entry: VersionedEntry) -> ProductRecord | object | None:
        if entry.payload is None:
            return None  # tombstone: deleted moments ago
        try:
            return decode_record(entry.payload)
        except (serialization.SerializationError, KeyError, TypeError, ValueError):
            log.warning("undecodable product cache entry; treating as a miss")
            return _UNDECODABLE

    def _fill_product(self, product_id: str, keys: ProductKeys) -> Read[ProductRecord | None]:
        try:
            token = self.cache.acquire_lease(keys.lease, self.policy.lease_ttl_ms)
        except CacheError:
            return Read(self._db_get(product_id), self._bypass("product"))
        if token is None:
            # Another request holds the lease and is reading the database: wait for its fill.
            entry = self._wait(lambda: self.cache.get_versioned(keys.entry))
            if entry is not None:
                cached = self._decode_entry(entry)
                if cached is not _UNDECODABLE:
                    self.events.emit("wait_hit", "product")
                    return Read(cached, CacheStatus.HIT)  # type: ignore[arg-type]
            return Read(self._db_get(product_id), CacheStatus.MISS)
        record = self._db_get(product_id)
        try:
            if record is None:
                self.cache.release_lock(keys.lease, token)
            else:
                landed = self.cache.fill_versioned(
                    keys.entry, keys.lease, token, encode_record(record), record.version, self._product_ttl()
                )
                self.events.emit("fill" if landed else "fill_rejected", "product")
        except CacheError:
            pass  # the read is served; the next read retries the fill
        return Read(record, CacheStatus.MISS)

    def _db_get(self, product_id: str) -> ProductRecord | None:
        self.events.emit("db_read", "product")
        return self.inner.get(product_id).value

    # --- lists, counts, categories ------------------------------------------------
    def list_page(self, query: ProductQuery) -> Read[ProductPage]:
        return self._cached_result(
            "list", query.normalized(), lambda: self.inner.list_page(query).value, _encode_page, _decode_page
        )

    def count(self, query: ProductQuery) -> Read[int]:
        return self._cached_result(
            "count", query.filters(), lambda: self.inner.count(query).value, serialization.dumps, serialization.loads
        )

    def categories(self) -> Read[list[CategoryCount]]:
        # Memoized one level up with Flask-Caching (products/category_memo.py).
        self.events.emit("db_read", "categories")
        return self.inner.categories()

    def _cached_result(
        self,
        kind: str,
        normalized: dict[str, Any],
        compute: Callable[[], T],
        encode: Callable[[T], bytes],
        decode: Callable[[bytes], T],
    ) -> Read[T]:
        def from_db() -> T:
            self.events.emit("db_read", kind)
            return compute()

        try:
            generation = self.cache.get_generation(self.keys.generation)
            key = self.keys.query_result(kind, generation, normalized)
            raw = self.cache.get(key)
        except CacheError:
            return Read(from_db(), self._bypass(kind))
        if raw is not None:
            try:
                value = decode(raw)
            except (serialization.SerializationError, KeyError, TypeError, ValueError):
                log.warning("undecodable %s cache entry; treating as a miss", kind)
            else:
                self.events.emit("hit", kind)
                return Read(value, CacheStatus.HIT)
        self.events.emit("miss", kind)
        lock_key = self.keys.fill_lock(key)
        try:
            token = self.cache.acquire_lock(lock_key, self.policy.lease_ttl_ms)
        except CacheError:
            return Read(from_db(), self._bypass(kind))
        if token is None:
            raw = self._wait(lambda: self.cache.get(key))
            if raw is not None:
                try:
                    value = decode(raw)
                except (serialization.SerializationError, KeyError, TypeError, ValueError):
                    pass
                else:
                    self.events.emit("wait_hit", kind)
                    return Read(value, CacheStatus.HIT)
            return Read(from_db(), CacheStatus.MISS)
        try:
            value = from_db()
            try:
                ttl_s = self.ttl.seconds(self.policy.list_ttl_s)
                landed = self.cache.fill_generational(self.keys.generation, generation, key, encode(value), ttl_s)
                self.events.emit("fill" if landed else "fill_rejected", kind)
            except CacheError:
                pass
        finally:
            with contextlib.suppress(CacheError):  # the lock expires by itself
                self.cache.release_lock(lock_key, token)
        return Read(value, CacheStatus.MISS)

    # --- writes ---------------------------------------------------------------------
    def create(self, values: dict[str, Any]) -> ProductRecord:
        record = self.inner.create(values)
        self._write_through(record)
        return record

    def update(self, product_id: str, values: dict[str, Any], expected_version: int | None) -> ProductRecord:
        record = self.inner.update(product_id, values, expected_version)
        self._write_through(record)
        return record

    def delete(self, product_id: str, expected_version: int | None) -> ProductRecord:
        record = self.inner.delete(product_id, expected_version)
        keys = self.keys.product(record.id)
        try:
            # The tombstone's version is one past the deleted one: a fill that read the
            # product before the delete carries an older version and is refused.
            self.cache.tombstone(keys.entry, keys.lease, record.version + 1, self.policy.tombstone_ttl_s)
            self.cache.bump_generation(self.keys.generation)
        except CacheError as error:
            self._record_failure(record.id, "delete", error)
        return record

    def _write_through(self, record: ProductRecord) -> None:
        keys = self.keys.product(record.id)
        try:
            self.cache.set_versioned(keys.entry, keys.lease, encode_record(record), record.version, self._product_ttl())
            self.cache.bump_generation(self.keys.generation)
            self.events.emit("write_through", "product")
        except CacheError as error:
            self._record_failure(record.id, "write", error)

    def write_through(self, record: ProductRecord) -> bool:
        """Version-guarded cache write of a record read from the database (warming, repair)."""
        keys = self.keys.product(record.id)
        return self.cache.set_versioned(
            keys.entry, keys.lease, encode_record(record), record.version, self._product_ttl()
        )

    def _record_failure(self, product_id: str, operation: str, error: CacheError) -> None:
        self.events.emit("write_failure", "product")
        log.warning("cache %s for product %s failed after the database commit: %s", operation, product_id, error)
        self.repairs.record(product_id, f"{operation}: {type(error).__name__}")

    # --- helpers --------------------------------------------------------------------
    def _product_ttl(self) -> int:
        return self.ttl.seconds(self.policy.product_ttl_s)

    def _bypass(self, kind: str) -> CacheStatus:
        self.events.emit("bypass", kind)
        return CacheStatus.BYPASS

    def _wait(self, probe: Callable[[], T | None]) -> T | None:
        """Poll probe until it returns a value or fill_wait_ms passes; cache errors end the wait."""
        deadline = time.monotonic() + self.policy.fill_wait_ms / 1000
        while time.monotonic() < deadline:
            time.sleep(_POLL_S)
            try:
                value = probe()
            except CacheError:
                return None
            if value is not None:
                return value
        return None


_UNDECODABLE = object()
