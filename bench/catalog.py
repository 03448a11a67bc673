"""The benchmark's catalog: deterministic ids, the app's document shape, fast seeding, popular filters.

Ids are fixed 24-hex strings (a prefix and a counter), so the wrk script can name any
product without a file of ids. Three disjoint ranges: the catalog that the load reads
(Zipf over it) and updates; a reserve that the load deletes (never read, so a delete
never turns a read into a 404); and the stale checker's own products.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo.database import Database

CATALOG_PREFIX = "5e11c0de000000a0"
RESERVE_PREFIX = "5e11c0de000000d0"
CHECKER_PREFIX = "5e11c0de000000c0"
CHECKER_CATEGORY = "bench-checker"
RESERVE_CATEGORY = "bench-reserve"
CATEGORIES = ("audio", "outdoor", "kitchen", "books", "garden", "toys", "sports", "office")
TAGS = ("popular", "budget", "premium", "new", "sale")
# The app's indexes (jollyjet's ProductDocument meta), created the way mongoengine does.
INDEXES: tuple[tuple[list[tuple[str, int]], bool], ...] = (
    ([("sku", 1)], True),
    ([("category", 1), ("price_cents", 1)], False),
    ([("tags", 1)], False),
    ([("created_at", -1)], False),
    ([("price_cents", 1)], False),
)
# A small set of popular list and count queries (the same for every mode and both generators).
POPULAR_LISTS = (
    "/api/v1/products?category=audio",
    "/api/v1/products?category=outdoor&sort=price",
    "/api/v1/products?tag=popular",
    "/api/v1/products?in_stock=true&sort=-price",
    "/api/v1/products?min_price=10&max_price=50&sort=price",
    "/api/v1/products?category=books&page=2",
)
POPULAR_COUNTS = (
    "/api/v1/products/count?category=audio",
    "/api/v1/products/count?in_stock=true",
    "/api/v1/products/count?tag=sale",
)


def product_id(prefix: str, index: int) -> str:
    """The fixed id of one product (prefix + 8 hex digits)."""
    return f"{prefix}{index:08x}"


def catalog_ids(count: int) -> list[str]:
    """Ids of the catalog the load reads, most popular (Zipf rank 1) first."""
    return [product_id(CATALOG_PREFIX, i) for i in range(count)]


def checker_ids(count: int) -> list[str]:
    """Ids of the stale checker's own products."""
    return [product_id(CHECKER_PREFIX, i) for i in range(count)]


@dataclass(frozen=True)
class SeedPlan:
    """How many products of each range to insert."""

    catalog: int
    reserve: int = 1500
    checker: int = 16


def _document(pid: str, index: int, rng: random.Random, now: datetime, category: str | None = None) -> dict[str, Any]:
    """One product exactly as the service stores it (integer cents, version 1, ms datetimes)."""
    cat = category or CATEGORIES[index % len(CATEGORIES)]
    return {
        "_id": ObjectId(pid),
        "sku": f"B-{pid[-10:]}",
        "name": f"{cat.title()} item {index}",
        "description": "A product of the benchmark catalog, with a description of ordinary length. " * 2,
        "price_cents": rng.randrange(199, 20000),
        "currency": "USD",
        "category": cat,
        "tags": sorted(rng.sample(TAGS, 2)),
        "stock": rng.choice((0, 3, 12, 40, 100)),
        "is_active": True,
        "version": 1,
        "created_at": now,
        "updated_at": now,
    }


def documents(plan: SeedPlan, seed: int = 1) -> Iterator[dict[str, Any]]:
    """Every document of the plan, deterministic for a seed (timestamps aside)."""
    rng = random.Random(seed)
    # Written a day before the run, as a production catalog was written before the cache
    # warmed: a fill of a version written in the last two minutes may not serve the next
    # write as its before-image (products/catalog_writes.py), which would make a freshly
    # seeded catalog look like one written during the run.
    now = datetime.now(UTC) - timedelta(days=1)
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)
    for i in range(plan.catalog):
        yield _document(product_id(CATALOG_PREFIX, i), i, rng, now)
    for i in range(plan.reserve):
        yield _document(product_id(RESERVE_PREFIX, i), i, rng, now, RESERVE_CATEGORY)
    for i in range(plan.checker):
        yield _document(product_id(CHECKER_PREFIX, i), i, rng, now, CHECKER_CATEGORY)


def seed(db: Database[dict[str, Any]], plan: SeedPlan, seed_value: int = 1, batch: int = 5000) -> int:
    """Drop the products collection, create the app's indexes, insert the plan; returns how many."""
    products = db["products"]
    products.drop()
    for keys, unique in INDEXES:
        if unique:
            products.create_index(keys, background=False, unique=True)
        else:
            products.create_index(keys, background=False)
    inserted = 0
    chunk: list[dict[str, Any]] = []
    for doc in documents(plan, seed_value):
        chunk.append(doc)
        if len(chunk) >= batch:
            inserted += len(products.insert_many(chunk, ordered=False).inserted_ids)
            chunk = []
    if chunk:
        inserted += len(products.insert_many(chunk, ordered=False).inserted_ids)
    return inserted


def money(cents: int) -> str:
    """Integer cents → "12.34" (the API's price format)."""
    whole, part = divmod(cents, 100)
    return f"{whole}.{part:02d}"


def api_timestamp(moment: datetime) -> str:
    """A datetime as the API writes it: ISO 8601, milliseconds, "Z"."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def to_api(doc: dict[str, Any]) -> dict[str, Any]:
    """A stored document → the API's JSON shape (the same fields and formats as the service)."""
    return {
        "id": str(doc["_id"]),
        "sku": doc["sku"],
        "name": doc["name"],
        "description": doc.get("description", ""),
        "price": money(doc["price_cents"]),
        "currency": doc["currency"],
        "category": doc["category"],
        "tags": list(doc.get("tags", [])),
        "stock": doc["stock"],
        "is_active": doc["is_active"],
        "version": doc["version"],
        "created_at": api_timestamp(doc["created_at"]),
        "updated_at": api_timestamp(doc["updated_at"]),
    }
