"""The category list against a real redis-server: cached like a count, never left older than a write.

The category list is a cached result of the unfiltered set under its `members` and
`group.category` generations (products/cache/queries.py). A write that lands while a
read is between its MongoDB aggregate and its fill bumps a generation the fill was
computed under, so the older aggregate is refused (scripts.FILL_FILTERED); the next
read is a miss and sees the write.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from jollyjet.products.domain import CategoryCount, Read
from jollyjet.services import Services, services_of
from tests.support.factories import product_values

pytestmark = pytest.mark.integration
CATEGORIES = "/api/v1/categories"


def _truth(services: Services) -> list[dict[str, Any]]:
    return [{"category": c.category, "count": c.count} for c in services.mongo.categories().value]


def _write_during_next_aggregate(services: Services, write: Callable[[], object]) -> list[int]:
    """Make the next MongoDB categories aggregate run `write` after reading, before its fill."""
    inner = services.cache.repository.inner  # type: ignore[union-attr]
    aggregate = inner.categories
    calls: list[int] = []

    def aggregate_then_write() -> Read[list[CategoryCount]]:
        read = aggregate()
        if not calls:
            write()  # the older aggregate is in hand; the fill has not run yet
        calls.append(1)
        return read

    inner.categories = aggregate_then_write
    return calls


@pytest.mark.parametrize("write", ["create", "recategorize", "delete"])
def test_a_write_between_the_aggregate_and_its_fill_leaves_nothing_older_cached(redis_app: Flask, write: str) -> None:
    services = services_of(redis_app)
    client = redis_app.test_client()
    lamp = services.products.create(product_values(category="lamps"))
    services.products.create(product_values(category="chairs"))
    client.get("/api/v1/products/count")  # registers the unfiltered set: a first registration bumps the generation
    generation = services.cache.backend.get_generation(services.cache.keys.generation)  # type: ignore[union-attr]
    writes = {
        "create": lambda: services.products.create(product_values(category="tables")),
        "recategorize": lambda: services.products.update(lamp.id, {"category": "chairs"}, None),
        "delete": lambda: services.products.delete(lamp.id, None),
    }
    calls = _write_during_next_aggregate(services, writes[write])

    during = client.get(CATEGORIES)
    assert during.headers["X-Cache"] == "MISS" and calls == [1]
    # Served the aggregate read before the write (a state MongoDB held when the read began)...
    assert {"category": "lamps", "count": 1} in during.json
    # ...but it did not stay: the fill was refused, and every later read shows the write.
    after = client.get(CATEGORIES)
    assert after.headers["X-Cache"] == "MISS" and after.json == _truth(services) != during.json
    again = client.get(CATEGORIES)
    assert again.headers["X-Cache"] == "HIT" and again.json == _truth(services)
    # The write bumped its aspects of the unfiltered set, not every list and count.
    assert services.cache.backend.get_generation(services.cache.keys.generation) == generation  # type: ignore[union-attr]


def test_a_categories_read_after_a_write_always_reflects_it(redis_app: Flask) -> None:
    services = services_of(redis_app)
    client = redis_app.test_client()
    rng = random.Random(14)
    names = ("audio", "books", "garden", "toys")
    ids = [services.products.create(product_values(category=rng.choice(names))).id for _ in range(6)]
    sources = []
    for _ in range(60):
        action = rng.random()
        if action < 0.25:
            ids.append(services.products.create(product_values(category=rng.choice(names))).id)
        elif action < 0.4 and len(ids) > 2:
            services.products.delete(ids.pop(rng.randrange(len(ids))), None)
        elif action < 0.7:
            services.products.update(rng.choice(ids), {"category": rng.choice(names)}, None)
        else:  # changes nothing the category list depends on: the cached list stays a hit
            services.products.update(rng.choice(ids), {"stock": rng.randint(0, 9), "price_cents": 999}, None)
        for _ in range(2):
            read = client.get(CATEGORIES)
            assert read.json == _truth(services)
            sources.append(read.headers["X-Cache"])
    assert sources.count("HIT") >= 60 and "MISS" in sources
