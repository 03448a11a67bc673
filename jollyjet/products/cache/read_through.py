"""The cache-aside read with single flight, shared by products, list pages and counts.

On a miss one caller takes the key's lock (for products, the fill lease), reads the
database and fills; concurrent callers wait briefly for that fill instead of each
querying the database. Redis errors anywhere turn the read into a database read
(BYPASS); they never reach the caller.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from jollyjet.cache.events import CacheEvents
from jollyjet.cache.store import CacheBackend, CacheError
from jollyjet.products.cache.codec import DECODE_ERRORS, PageMovedOn
from jollyjet.products.domain import CacheStatus, Read

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")
_FIRST_POLL_S = 0.001
_MAX_POLL_S = 0.02
_ABSENT: Any = object()


@dataclass(frozen=True)
class CachedValue(Generic[R, T]):
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
        except PageMovedOn as moved:  # writes move pages on all the time: routine, not worth a warning
            log.debug("cached %s moved on (%s); treating it as a miss", self.kind, moved)
        except DECODE_ERRORS:
            log.warning("undecodable %s cache entry; treating it as a miss", self.kind)
        return _ABSENT


class ReadThrough:
    """Serves a CachedValue: hit, single-flight fill, wait for another's fill, or database fallback."""

    def __init__(self, cache: CacheBackend, events: CacheEvents, lock_ttl_ms: int, fill_wait_ms: int) -> None:
        self.cache = cache
        self.events = events
        self.lock_ttl_ms = lock_ttl_ms
        self.fill_wait_ms = fill_wait_ms

    def read(self, cached: CachedValue[R, T]) -> Read[T]:
        """Cache-aside read with single flight: one caller fills, concurrent callers wait for it."""
        try:
            found = cached.decoded(cached.lookup())
        except CacheError:
            return self.bypass(cached.kind, cached.compute)
        if found is not _ABSENT:
            self.events.emit("hit", cached.kind)
            return Read(found, CacheStatus.HIT)
        # Each read emits exactly one outcome (hit, wait_hit, miss or bypass), where it is
        # decided, so the outcome counts add up to the reads (the hit-ratio metric).
        try:
            token = self.cache.acquire_lock(cached.lock_key, self.lock_ttl_ms)
        except CacheError:
            return self.bypass(cached.kind, cached.compute)
        if token is None:
            # Another request is reading the database for this key: wait briefly for its fill.
            found = _ABSENT
            with contextlib.suppress(CacheError):  # decoding a page reads its items' entries
                found = cached.decoded(self._wait(cached.lookup))
            if found is not _ABSENT:
                self.events.emit("wait_hit", cached.kind)
                return Read(found, CacheStatus.HIT)
            self.events.emit("miss", cached.kind)
            return Read(self.from_db(cached.kind, cached.compute), CacheStatus.MISS)
        try:
            # A filler may have finished between our miss and our lock: look once more.
            with contextlib.suppress(CacheError):
                found = cached.decoded(cached.lookup())
            if found is not _ABSENT:
                self.events.emit("wait_hit", cached.kind)
                return Read(found, CacheStatus.HIT)
            self.events.emit("miss", cached.kind)
            value = self.from_db(cached.kind, cached.compute)
            with contextlib.suppress(CacheError):  # the read is served; a later read fills
                self.events.emit("fill" if cached.fill(token, value) else "fill_rejected", cached.kind)
            return Read(value, CacheStatus.MISS)
        finally:
            with contextlib.suppress(CacheError):  # it expires by itself
                self.cache.release_lock(cached.lock_key, token)

    def from_db(self, kind: str, compute: Callable[[], T]) -> T:
        """Read the database, counting it (the metric behind "DB queries saved")."""
        self.events.emit("db_read", kind)
        return compute()

    def bypass(self, kind: str, compute: Callable[[], T]) -> Read[T]:
        """Serve from the database without the cache (Redis failed or the breaker is open)."""
        self.events.emit("bypass", kind)
        return Read(self.from_db(kind, compute), CacheStatus.BYPASS)

    def _wait(self, probe: Callable[[], T | None]) -> T | None:
        """Poll probe until it returns a value or fill_wait_ms passes; cache errors end the wait."""
        deadline = time.monotonic() + self.fill_wait_ms / 1000
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
