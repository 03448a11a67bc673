"""Read popularity: which products and list queries clients read most (cache warming uses it).

Counting every read would add a Redis round trip to every cached read. Instead a
read is counted with probability `sample_rate` and weighted by 1/sample_rate, so
the expected score is the true read count at a fraction of the cost.
"""

from __future__ import annotations

import contextlib
import logging
import random
from typing import Any

import orjson

from jollyjet.cache.backend import CacheBackend, CacheError
from jollyjet.cache.keys import CacheKeys

log = logging.getLogger(__name__)


def query_member(normalized_query: dict[str, Any]) -> str:
    """The sorted-set member naming a normalized list query (canonical JSON)."""
    return orjson.dumps(normalized_query, option=orjson.OPT_SORT_KEYS).decode()


class PopularityTracker:
    """Sampled ZINCRBY on reads; failures are ignored (popularity is a hint, never needed to serve)."""

    def __init__(
        self, cache: CacheBackend, keys: CacheKeys, sample_rate: float, rng: random.Random | None = None
    ) -> None:
        if not 0 < sample_rate <= 1:
            raise ValueError("sample_rate must be in (0, 1]")
        self.cache = cache
        self.keys = keys
        self.sample_rate = sample_rate
        self._rng = rng or random.Random()

    def _sampled(self) -> bool:
        return self.sample_rate >= 1 or self._rng.random() < self.sample_rate

    def product_read(self, product_id: str) -> None:
        """Count one read of a product (an ObjectId string, already validated)."""
        if self._sampled():
            with contextlib.suppress(CacheError):
                self.cache.incr_scores(self.keys.popular_products, {product_id: 1 / self.sample_rate})

    def query_read(self, normalized_query: dict[str, Any]) -> None:
        """Count one read of a list query; pages of one query count together (warming fills page 1)."""
        if self._sampled():
            first_page = {**normalized_query, "page": 1}
            with contextlib.suppress(CacheError):
                self.cache.incr_scores(self.keys.popular_queries, {query_member(first_page): 1 / self.sample_rate})

    def top_products(self, n: int) -> list[str]:
        """The n most-read product ids, most-read first."""
        return self.cache.top_members(self.keys.popular_products, 0, n - 1) if n > 0 else []

    def top_queries(self, n: int) -> list[dict[str, Any]]:
        """The n most-read list queries (page 1), most-read first; unreadable members are skipped."""
        if n <= 0:
            return []
        queries = []
        for member in self.cache.top_members(self.keys.popular_queries, 0, n - 1):
            try:
                value = orjson.loads(member)
            except orjson.JSONDecodeError:
                log.warning("skipping an unreadable popular-query member")
                continue
            if isinstance(value, dict):
                queries.append(value)
        return queries
