"""Cache warming: put the products and list pages clients read most into Redis before they ask.

Products are filled through leases like read misses, so warming never overwrites a newer value (a write
between its database read and its cache write revokes the lease). Entries already cached are left alone.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

from jollyjet.cache.keys import PopularityTracker
from jollyjet.extensions import Services
from jollyjet.products.catalog import CachedProductRepository
from jollyjet.products.record import SORT_FIELDS, CacheStatus, ProductQuery, is_product_id
from jollyjet.settings import WARM_TOP_PRODUCTS, WARM_TOP_QUERIES, Settings

log = logging.getLogger(__name__)
_BATCH = 200  # ids per database query and per lease round
# ProductQuery's field types, checked exactly (type(), not isinstance: True is not a page number): a corrupt
# member reaching the database query (a non-str `q`, an unknown sort) would fail the whole run.
_QUERY_FIELDS: dict[str, type] = {
    **dict.fromkeys(("category", "tag", "q", "sort"), str),
    **dict.fromkeys(("min_price_cents", "max_price_cents", "page", "page_size"), int),
    **dict.fromkeys(("in_stock", "is_active"), bool),
}
_REQUIRED = ("sort", "page", "page_size")


@dataclass
class WarmReport:
    """What one warming run did."""

    products_considered: int = 0
    products_warmed: int = 0
    products_skipped: int = 0
    queries_considered: int = 0
    queries_warmed: int = 0
    queries_skipped: int = 0
    duration_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready report (task result, logs, metrics), with the cache keys this run wrote."""
        return {**asdict(self), "keys_warmed": self.products_warmed + self.queries_warmed}


def query_from_member(raw: dict[str, Any]) -> ProductQuery | None:
    """Rebuild a ProductQuery from a popularity member; None if it does not describe a page-1 query."""
    for name, value in raw.items():
        expected = _QUERY_FIELDS.get(name)
        optional_none = value is None and name not in _REQUIRED
        if expected is None or not (optional_none or type(value) is expected):
            return None
    query = ProductQuery(**raw)
    valid = query.page == 1 and query.page_size >= 1 and query.sort.removeprefix("-") in SORT_FIELDS
    return query if valid else None


def run_warm(services: Services, settings: Settings) -> WarmReport:
    """The warming job: the most-read products and list pages, as many as settings say."""
    cache = services.require_cache()
    return warm_cache(cache.repository, cache.popularity, WARM_TOP_PRODUCTS, WARM_TOP_QUERIES)


def warm_cache(
    repository: CachedProductRepository, popularity: PopularityTracker, top_products: int, top_queries: int
) -> WarmReport:
    """Fill the most-read products and the first page of the most-read list queries."""
    started = time.monotonic()
    members = popularity.top_products(top_products)
    # Key names are built from ObjectId strings only (keys.py raises otherwise): skip corrupt members.
    ids = [pid for pid in members if is_product_id(pid)]
    report = WarmReport(products_considered=len(members), products_skipped=len(members) - len(ids))
    for start in range(0, len(ids), _BATCH):
        report.products_warmed += repository.writer.fill_missing(ids[start : start + _BATCH], repository.inner.get_many)
    for raw in popularity.top_queries(top_queries):
        report.queries_considered += 1
        query = query_from_member(raw)
        if query is None:
            report.queries_skipped += 1
        elif repository.warm_query(query).source is CacheStatus.MISS:
            report.queries_warmed += 1
    report.duration_s = round(time.monotonic() - started, 4)
    log.info("cache warming: %s", report.as_dict())
    return report
