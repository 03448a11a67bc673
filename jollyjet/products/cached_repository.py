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
from typing import Any, Generic, TypeVar

from jollyjet.cache import serialization
from jollyjet.cache.backend import CacheBackend, CacheError, VersionedEntry
from jollyjet.cache.events import CacheEvents
from jollyjet.cache.keys import CacheKeys
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
R = TypeVar("R")
_FIRST_POLL_S = 0.001
_MAX_POLL_S = 0.02


@dataclass(frozen=True)
class CachePolicy:
    """TTLs and timings of the cached repository (from settings)."""

    product_ttl_s: int = 3600
    list_ttl_s: int = 300
    tombstone_ttl_s: int = 60
    lease_ttl_ms: int = 2000
    fill_wait_ms: int = 250


def encode_record(record: ProductRecord) -> bytes:
    """Product → cache bytes."""
    return serialization.dumps(record.to_dict())


def decode_record(data: bytes) -> ProductRecord:
    """Cache bytes → product."""
    return ProductRecord.from_dict(serialization.loads(data))


@dataclass(frozen=True)
class _Codec(Generic[T]):
    encode: Callable[[T], bytes]
    decode: Callable[[bytes], T]


_PAGE_CODEC: _Codec[ProductPage] = _Codec(
    encode=lambda page: serialization.dumps({"items": [r.to_dict() for r in page.items], "total": page.total}),
    decode=lambda data: _page_from(serialization.loads(data)),
)
_COUNT_CODEC: _Codec[int] = _Codec(encode=serialization.dumps, decode=lambda data: int(serialization.loads(data)))


def _page_from(raw: dict[str, Any]) -> ProductPage:
    return ProductPage(items=[ProductRecord.from_dict(r) for r in raw["items"]], total=raw["total"])


def _decode_entry(entry: VersionedEntry) -> ProductRecord | None:
    # A tombstone decodes to None: the product was deleted moments ago.
    return None if entry.payload is None else decode_record(entry.payload)


_ABSENT: Any = object()
_DECODE_ERRORS = (serialization.SerializationError, KeyError, TypeError, ValueError)


@dataclass(frozen=True)
class _Slot(Generic[R, T]):
    """How to look up, decode, compute and fill one cached value (a product, a page, a count)."""

    kind: str
    lookup: Callable[[], R | None]
    decode: Callable[[R], T]
    lock_key: str
    compute: Callable[[], T]
    fill: Callable[[str, T], bool]

    def decoded(self, raw: R | None) -> T:
        """The cached value, or _ABSENT for nothing cached or undecodable bytes (treated as a miss)."""
        if raw is None:
            return _ABSENT
        try:
            return self.decode(raw)
        except _DECODE_ERRORS:
            log.warning("undecodable %s cache entry; treating it as a miss", self.kind)
            return _ABSENT


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

    # --- reads ------------------------------------------------------------------------
    def get(self, product_id: str) -> Read[ProductRecord | None]:
        if object_id(product_id) is None:
            return Read(None, CacheStatus.BYPASS)
        keys = self.keys.product(product_id)

        def fill(token: str, record: ProductRecord | None) -> bool:
            if record is None:
                return False  # unknown ids are not cached
            payload = encode_record(record)
            return self.cache.fill_versioned(
                keys.entry, keys.lease, token, payload, record.version, self._product_ttl()
            )

        return self._read_through(
            _Slot(
                kind="product",
                lookup=lambda: self.cache.get_versioned(keys.entry),
                decode=_decode_entry,
                lock_key=keys.lease,  # the fill lease doubles as the single-flight lock
                compute=lambda: self.inner.get(product_id).value,
                fill=fill,
            )
        )

    def list_page(self, query: ProductQuery) -> Read[ProductPage]:
        return self._generational("list", query.normalized(), lambda: self.inner.list_page(query).value, _PAGE_CODEC)

    def count(self, query: ProductQuery) -> Read[int]:
        return self._generational("count", query.filters(), lambda: self.inner.count(query).value, _COUNT_CODEC)

    def categories(self) -> Read[list[CategoryCount]]:
        # Memoized one level up with Flask-Caching (products/category_memo.py).
        self.events.emit("db_read", "categories")
        return self.inner.categories()

    def _generational(
        self, kind: str, normalized: dict[str, Any], compute: Callable[[], T], codec: _Codec[T]
    ) -> Read[T]:
        try:
            generation = self.cache.get_generation(self.keys.generation)
        except CacheError:
            return Read(self._from_db(kind, compute), self._bypass(kind))
        key = self.keys.query_result(kind, generation, normalized)

        def fill(_token: str, value: T) -> bool:
            ttl_s = self.ttl.seconds(self.policy.list_ttl_s)
            return self.cache.fill_generational(self.keys.generation, generation, key, codec.encode(value), ttl_s)

        return self._read_through(
            _Slot(
                kind=kind,
                lookup=lambda: self.cache.get(key),
                decode=codec.decode,
                lock_key=self.keys.fill_lock(key),
                compute=compute,
                fill=fill,
            )
        )

    def _read_through(self, slot: _Slot[R, T]) -> Read[T]:
        """Cache-aside read with single flight: one caller fills, concurrent callers wait for it."""
        try:
            found = slot.decoded(slot.lookup())
        except CacheError:
            return Read(self._from_db(slot.kind, slot.compute), self._bypass(slot.kind))
        if found is not _ABSENT:
            self.events.emit("hit", slot.kind)
            return Read(found, CacheStatus.HIT)
        self.events.emit("miss", slot.kind)
        try:
            token = self.cache.acquire_lock(slot.lock_key, self.policy.lease_ttl_ms)
        except CacheError:
            return Read(self._from_db(slot.kind, slot.compute), self._bypass(slot.kind))
        if token is None:
            # Another request is reading the database for this key: wait briefly for its fill.
            found = slot.decoded(self._wait(slot.lookup))
            if found is not _ABSENT:
                self.events.emit("wait_hit", slot.kind)
                return Read(found, CacheStatus.HIT)
            return Read(self._from_db(slot.kind, slot.compute), CacheStatus.MISS)
        try:
            # A filler may have finished between our miss and our lock: look once more.
            with contextlib.suppress(CacheError):
                found = slot.decoded(slot.lookup())
            if found is not _ABSENT:
                self.events.emit("wait_hit", slot.kind)
                return Read(found, CacheStatus.HIT)
            value = self._from_db(slot.kind, slot.compute)
            with contextlib.suppress(CacheError):  # the read is served; a later read fills
                if value is not None:
                    self.events.emit("fill" if slot.fill(token, value) else "fill_rejected", slot.kind)
            return Read(value, CacheStatus.MISS)
        finally:
            with contextlib.suppress(CacheError):  # it expires by itself
                self.cache.release_lock(slot.lock_key, token)

    def _from_db(self, kind: str, compute: Callable[[], T]) -> T:
        self.events.emit("db_read", kind)
        return compute()

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
        pause = _FIRST_POLL_S
        while time.monotonic() < deadline:
            time.sleep(pause)
            # Back off so that many waiters on one hot key do not hammer Redis.
            pause = min(pause * 2, _MAX_POLL_S)
            try:
                value = probe()
            except CacheError:
                return None
            if value is not None:
                return value
        return None
