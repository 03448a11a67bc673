"""The product domain: records, queries, pages and ids every product layer passes around.

Plain data (no Flask, no Mongo, no Redis). Ids are MongoDB ObjectIds in their canonical
24-hex form; every layer checks one with object_id() before building a key or a query.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar

from bson import ObjectId
from bson.errors import InvalidId

T = TypeVar("T")

# Public sort names → the record's (and the document's) fields.
SORT_FIELDS = {
    "price": "price_cents",
    "name": "name",
    "created_at": "created_at",
    "updated_at": "updated_at",
    "stock": "stock",
}
_PRODUCT_ID = re.compile(r"[0-9a-f]{24}")


def object_id(product_id: str) -> ObjectId | None:
    """The ObjectId for a canonical 24-hex id, or None for anything else."""
    if not _PRODUCT_ID.fullmatch(product_id):
        return None
    try:
        return ObjectId(product_id)
    except InvalidId:
        return None


class CacheStatus(StrEnum):
    """How a read was served: from the cache, filled after a miss, or without the cache."""

    HIT = "HIT"
    MISS = "MISS"
    BYPASS = "BYPASS"


@dataclass(frozen=True)
class ProductRecord:
    """One product as stored. price_cents is exact integer money."""

    id: str
    sku: str
    name: str
    description: str
    price_cents: int
    currency: str
    category: str
    tags: tuple[str, ...]
    stock: int
    is_active: bool
    version: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ProductQuery:
    """Validated list/count filters, sort and page. Every field is already normalized."""

    category: str | None = None
    tag: str | None = None
    min_price_cents: int | None = None
    max_price_cents: int | None = None
    in_stock: bool | None = None
    is_active: bool | None = None
    q: str | None = None
    sort: str = "-created_at"
    page: int = 1
    page_size: int = 20

    def filters(self) -> dict[str, Any]:
        """Only the filter part (what a count depends on), without None values."""
        keys = ("category", "tag", "min_price_cents", "max_price_cents", "in_stock", "is_active", "q")
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}

    def normalized(self) -> dict[str, Any]:
        """Filters plus sort and page: what a list result depends on (used for cache keys)."""
        return {**self.filters(), "sort": self.sort, "page": self.page, "page_size": self.page_size}


@dataclass(frozen=True)
class ProductPage:
    """One page of a product list and the total matching the filters."""

    items: list[ProductRecord]
    total: int


@dataclass(frozen=True)
class Read(Generic[T]):
    """A read result and how it was served."""

    value: T
    source: CacheStatus = CacheStatus.BYPASS


@dataclass(frozen=True)
class CategoryCount:
    """A category and how many products it holds."""

    category: str
    count: int
