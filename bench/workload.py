"""What the load reads and writes: the seeded catalog, the popular filters and the request mix.

Ids are fixed 24-hex strings (a prefix and a counter) in three ranges: the catalog the load
reads (Zipf) and updates; a reserve it deletes (never read, so no read turns into a 404); the
stale checker's own products. wrk replays the requests this module writes to a file.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bson import ObjectId
from pymongo.database import Database

CATALOG_PREFIX = "5e11c0de000000a0"
RESERVE_PREFIX = "5e11c0de000000d0"
CHECKER_PREFIX = "5e11c0de000000c0"
CHECKER_CATEGORY = "bench-checker"
CATEGORIES = ("audio", "outdoor", "kitchen", "books", "garden", "toys", "sports", "office")
TAGS = ("popular", "budget", "premium", "new", "sale")
# The service's indexes (its product document's meta).
INDEXES: list[list[tuple[str, int]]] = [[("sku", 1)], [("category", 1), ("price_cents", 1)], [("tags", 1)]]
INDEXES += [[("created_at", -1)], [("price_cents", 1)]]
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


@dataclass(frozen=True)
class SeedPlan:
    """How many products of each range to insert."""

    catalog: int
    reserve: int = 1500
    checker: int = 16


def documents(plan: SeedPlan, seed: int = 1) -> Iterator[dict[str, Any]]:
    """Every document of the plan exactly as the service stores it, deterministic for a seed (timestamps aside)."""
    rng = random.Random(seed)
    # Written a day before, as a real catalog is: a fill of a version written in the last two minutes
    # may not serve the next write as its before-image, so a fresh catalog would look written mid-run.
    now = datetime.now(UTC) - timedelta(days=1)
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)
    ranges = ((CATALOG_PREFIX, plan.catalog, None), (RESERVE_PREFIX, plan.reserve, "bench-reserve"))
    for prefix, count, category in (*ranges, (CHECKER_PREFIX, plan.checker, CHECKER_CATEGORY)):
        for i in range(count):
            pid, cat = product_id(prefix, i), category or CATEGORIES[i % len(CATEGORIES)]
            yield {
                "_id": ObjectId(pid),
                "sku": f"B-{pid[-10:]}",
                "name": f"{cat.title()} item {i}",
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


def seed(db: Database[dict[str, Any]], plan: SeedPlan, seed_value: int = 1, batch: int = 5000) -> int:
    """Drop the products collection, create the service's indexes, insert the plan; returns how many."""
    products = db["products"]
    products.drop()
    for keys in INDEXES:
        products.create_index(keys, unique=keys == [("sku", 1)])
    docs = documents(plan, seed_value)
    inserted = 0
    while chunk := list(itertools.islice(docs, batch)):
        inserted += len(products.insert_many(chunk, ordered=False).inserted_ids)
    return inserted


def to_api(doc: dict[str, Any]) -> dict[str, Any]:
    """A stored document → the API's JSON shape (the same fields and formats as the service)."""

    def stamp(moment: datetime) -> str:  # every client here reads MongoDB with tz_aware=True
        return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    whole, cents = divmod(doc["price_cents"], 100)
    api = {k: doc[k] for k in ("sku", "name", "currency", "category", "stock", "is_active", "version")}
    return api | {
        "id": str(doc["_id"]),
        "description": doc.get("description", ""),
        "price": f"{whole}.{cents:02d}",
        "tags": list(doc.get("tags", [])),
        "created_at": stamp(doc["created_at"]),
        "updated_at": stamp(doc["updated_at"]),
    }


@dataclass(frozen=True)
class Mix:
    """Fractions of all requests (the rest are product reads) and the Zipf exponent."""

    # Product pages dominate a catalog's reads; listings and counts are the rest.
    p_list: float = 0.03
    p_count: float = 0.02
    p_update: float = 0.04
    p_create: float = 0.005
    p_delete: float = 0.005
    zipf_s: float = 1.1

    @property
    def p_write(self) -> float:
        """The share of writes."""
        return self.p_update + self.p_create + self.p_delete


@dataclass(frozen=True)
class Request:
    """One request of the workload, and its kind: product, list, count or write."""

    method: str
    path: str
    body: bytes | None = None

    @property
    def kind(self) -> str:
        """product, list, count (reads) or write."""
        if self.method != "GET":
            return "write"
        return {"/api/v1/products": "list", "/api/v1/products/count": "count"}.get(self.path.split("?")[0], "product")


class Workload:
    """A deterministic sequence of requests for a seed (deletes walk the given reserve indexes once)."""

    def __init__(self, catalog: int, mix: Mix, seed: int, reserve: Iterable[int], nonce: str) -> None:
        self.mix, self.rng, self.ranks = mix, random.Random(seed), range(catalog)
        self.cdf = list(itertools.accumulate(1 / (k**mix.zipf_s) for k in range(1, catalog + 1)))
        self.reserve, self.nonce, self.created = iter(reserve), nonce, 0

    def rank(self) -> int:
        """A catalog index: P(rank k) proportional to 1/(k+1)^s (rank 0 the most popular)."""
        return self.rng.choices(self.ranks, cum_weights=self.cdf)[0]

    def product_read(self) -> Request:
        """GET one product, id by Zipf rank."""
        return Request("GET", f"/api/v1/products/{product_id(CATALOG_PREFIX, self.rank())}")

    def write(self, r: float) -> Request:
        """An update, create or delete, chosen by r in [0, p_write)."""
        mix = self.mix
        if mix.p_update <= r < mix.p_update + mix.p_create:
            self.created += 1
            body = (
                f'{{"sku": "load-{self.nonce}-{self.created}", "name": "Load test item", "price": "19.99", '
                f'"category": "audio", "tags": ["new"], "stock": 5}}'
            )
            return Request("POST", "/api/v1/products", body.encode())
        if r >= mix.p_update + mix.p_create and (index := next(self.reserve, None)) is not None:
            return Request("DELETE", f"/api/v1/products/{product_id(RESERVE_PREFIX, index)}")
        pid = product_id(CATALOG_PREFIX, self.rank())
        return Request("PATCH", f"/api/v1/products/{pid}", f'{{"stock": {self.rng.randint(0, 60)}}}'.encode())

    def next_mixed(self) -> Request:
        """One request of the mixed workload."""
        r, mix = self.rng.random(), self.mix
        if r < mix.p_write:
            return self.write(r)
        r -= mix.p_write
        if r < mix.p_list:
            return Request("GET", self.rng.choice(POPULAR_LISTS))
        if r - mix.p_list < mix.p_count:
            return Request("GET", self.rng.choice(POPULAR_COUNTS))
        return self.product_read()

    def mixed(self, count: int) -> Iterator[Request]:
        """count requests of the mixed workload."""
        return (self.next_mixed() for _ in range(count))


def sweep_requests(catalog: int) -> Iterator[Request]:
    """Every catalog product and every popular path once (cache warming)."""
    for pid in catalog_ids(catalog):
        yield Request("GET", f"/api/v1/products/{pid}")
    for path in (*POPULAR_LISTS, *POPULAR_COUNTS):
        yield Request("GET", path)


def write_requests(path: Path, requests: Iterable[Request]) -> Path:
    """One "METHOD PATH [BODY]" line per request, the file bench/load.lua replays."""
    with path.open("w") as out:
        for r in requests:
            out.write(f"{r.method} {r.path}{' ' + r.body.decode() if r.body else ''}\n")
    return path
