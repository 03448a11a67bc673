"""The category list, memoized with Flask-Caching on the same Redis, behind the same breaker.

Flask-Caching's cache.get/cache.set raise when Redis is down (only its decorators
swallow errors, and not in debug mode), so every call here goes through the
circuit breaker and falls back to the database. Writes invalidate explicitly; if
that invalidation fails, the memo's TTL bounds how long the list can be stale.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask_caching import Cache

from jollyjet.cache.breaker import CircuitBreaker
from jollyjet.cache.client import REDIS_ERRORS
from jollyjet.cache.events import CacheEvents
from jollyjet.products.domain import CacheStatus, CategoryCount, Read

log = logging.getLogger(__name__)
_KEY = "categories"
_REDIS_ERRORS: tuple[type[Exception], ...] = (*REDIS_ERRORS, OSError)


class CategoryMemo:
    """get_or_compute / invalidate for the category aggregate."""

    def __init__(
        self, cache: Cache, breaker: CircuitBreaker | None, timeout_s: int, events: CacheEvents | None = None
    ) -> None:
        self.cache = cache
        self.breaker = breaker
        self.timeout_s = timeout_s
        self.events = events

    def _outcome(self, result: Read[list[CategoryCount]]) -> Read[list[CategoryCount]]:
        # One outcome per read, like the product, list and count reads (cache/events.py).
        if self.events is not None:
            self.events.emit(result.source.value.lower(), "categories")
        return result

    def _allowed(self) -> bool:
        return self.breaker is None or self.breaker.allow()

    def _succeeded(self) -> None:
        if self.breaker is not None:
            self.breaker.record_success()

    def _failed(self, error: Exception) -> None:
        log.warning("category memo: redis call failed: %s", type(error).__name__)
        if self.breaker is not None:
            self.breaker.record_failure()

    def get_or_compute(self, compute: Callable[[], list[CategoryCount]]) -> Read[list[CategoryCount]]:
        """Memoized categories, or computed from the database (and stored) on a miss."""
        if not self._allowed():
            return self._outcome(Read(compute(), CacheStatus.BYPASS))
        try:
            cached = self.cache.get(_KEY)
        except _REDIS_ERRORS as error:
            self._failed(error)
            return self._outcome(Read(compute(), CacheStatus.BYPASS))
        self._succeeded()
        if cached is not None:
            return self._outcome(Read([CategoryCount(category=c, count=n) for c, n in cached], CacheStatus.HIT))
        value = compute()
        if self._allowed():
            try:
                self.cache.set(_KEY, [[r.category, r.count] for r in value], timeout=self.timeout_s)
            except _REDIS_ERRORS as error:
                self._failed(error)
            else:
                self._succeeded()
        return self._outcome(Read(value, CacheStatus.MISS))

    def invalidate(self) -> None:
        """Drop the memo after a product write (failures are bounded by the TTL)."""
        if not self._allowed():
            return
        try:
            self.cache.delete(_KEY)
        except _REDIS_ERRORS as error:
            self._failed(error)
        else:
            self._succeeded()
