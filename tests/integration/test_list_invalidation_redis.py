"""Fine list/count invalidation against a real redis-server, judged by what MongoDB says, and counted.

A fixed-seed workload shaped like the benchmark's (95% reads: Zipf product ids, lists and
counts of a few popular filters; 5% writes: stock updates, creates, deletes), run in one
process so every result can be compared with the database right after each write:
no list, count or product read may differ from MongoDB (the zero-stale rule; with one
client, every completed write precedes every later read), and the hardware-independent
figures are asserted: database reads per 1,000 read requests in steady state, and Redis
commands per product hit.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from jollyjet.extensions import services_of
from tests.conftest import TOKEN, make_app, make_settings
from tests.support.events import EventCounter
from tests.support.factories import product_payload
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PRODUCTS = "/api/v1/products"
CATEGORIES = ("audio", "outdoor", "kitchen", "books")
TAGS = ("popular", "budget", "premium", "new", "sale")
LISTS = (
    "?category=audio",
    "?category=outdoor&sort=price",
    "?tag=popular",
    "?in_stock=true&sort=-price",
    "?min_price=10&max_price=50&sort=price",
    "?category=books&page=2&page_size=5",
)
COUNTS = ("?category=audio", "?in_stock=true", "?tag=sale")


@pytest.fixture
def app(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> tuple[Flask, EventCounter]:
    events = EventCounter()
    # Popularity is sent by a daemon thread every few seconds; not during the command count below.
    monkeypatch.setattr("jollyjet.app_factory.POPULARITY_FLUSH_S", 300)
    settings = make_settings(redis_url=redis_server.url)
    return make_app(settings, events=events), events


def _create(client: FlaskClient, rng: random.Random, n: int, **fields: Any) -> dict[str, Any]:
    values = {
        "category": CATEGORIES[n % len(CATEGORIES)],
        "tags": rng.sample(TAGS, 2),
        "price": f"{rng.randint(500, 9000) / 100:.2f}",
        "stock": rng.randint(0, 30),
        **fields,
    }
    response = client.post(PRODUCTS, json=product_payload(**values), headers=AUTH)
    assert response.status_code == 201, response.get_data()
    return response.get_json()  # type: ignore[no-any-return]


def _truth(app: Flask, path: str) -> Any:
    """What MongoDB says for a read path, through the uncached repository."""
    services = services_of(app)
    with app.test_request_context(path):
        from flask import request

        from jollyjet.products.record import product_to_api
        from jollyjet.products.schemas import ProductFilterSchema, ProductListQuerySchema
        from jollyjet.products.views import query_from_args

        if path.startswith(f"{PRODUCTS}/count"):
            query = query_from_args(ProductFilterSchema().load(request.args))
            return {"count": services.mongo.count(query).value}
        if path.startswith(f"{PRODUCTS}?") or path == PRODUCTS:
            query = query_from_args(ProductListQuerySchema().load(request.args))
            return [product_to_api(r) for r in services.mongo.list_page(query).value.items]
        record = services.mongo.get(path.rsplit("/", 1)[1]).value
        return None if record is None else product_to_api(record)


def test_every_read_equals_the_database_and_reads_rarely_reach_it(
    app: tuple[Flask, EventCounter], redis_server: RedisServer
) -> None:
    flask_app, events = app
    client = flask_app.test_client()
    rng = random.Random(20261126)
    catalog = [_create(client, rng, n)["id"] for n in range(200)]
    reserve = [_create(client, rng, n, category="reserve")["id"] for n in range(30)]
    weights = [1 / (rank**1.1) for rank in range(1, len(catalog) + 1)]
    paths = [f"{PRODUCTS}{q}" for q in LISTS] + [f"{PRODUCTS}/count{q}" for q in COUNTS]
    for path in [f"{PRODUCTS}/{pid}" for pid in catalog] + paths:  # warm-up pass
        assert client.get(path).status_code == 200

    def read(path: str) -> None:
        response = client.get(path)
        expected = _truth(flask_app, path)
        assert response.status_code == (200 if expected is not None else 404), path
        if expected is not None:
            assert response.get_json() == expected, (path, response.headers.get("X-Cache"))

    events.reset()
    reads = 0
    created = 0
    for _ in range(3000):
        r = rng.random()
        if r < 0.04:
            pid = rng.choices(catalog, weights)[0]
            assert (
                client.patch(f"{PRODUCTS}/{pid}", json={"stock": rng.randint(0, 60)}, headers=AUTH).status_code == 200
            )
        elif r < 0.045:
            created += 1
            catalog.append(_create(client, rng, created, category="audio", tags=["new"], stock=5)["id"])
            weights.append(weights[-1])
        elif r < 0.05 and reserve:
            assert client.delete(f"{PRODUCTS}/{reserve.pop()}", headers=AUTH).status_code == 204
        else:
            reads += 1
            if r < 0.11:
                read(rng.choice(paths[: len(LISTS)]))
            elif r < 0.15:
                read(rng.choice(paths[len(LISTS) :]))
            else:
                read(f"{PRODUCTS}/{rng.choices(catalog, weights)[0]}")
    # A list page costs MongoDB two queries (count and find), a count or a product one.
    queries = events.count("db_read") + events.count("db_read", "list")
    per_thousand = queries * 1000 / reads
    print(f"MongoDB queries per 1,000 read requests: {per_thousand:.1f} ({events.snapshot()})")
    assert per_thousand <= 50

    # One Redis command (one round trip) per product hit.
    raw = redis_server.client()
    services_of(flask_app).require_cache().popularity.flush()
    raw.config_resetstat()
    for pid in catalog[:100]:
        assert client.get(f"{PRODUCTS}/{pid}").headers["X-Cache"] == "HIT"
    stats = raw.info("commandstats")
    commands = {name: value["calls"] for name, value in stats.items() if not name.startswith("cmdstat_config")}
    assert commands == {"cmdstat_hmget": 100}, commands


def test_a_write_changing_no_filtered_or_sorted_field_keeps_lists_and_counts_cached(
    app: tuple[Flask, EventCounter],
) -> None:
    flask_app, _ = app
    client = flask_app.test_client()
    rng = random.Random(7)
    product = _create(client, rng, 0, category="audio", stock=4, price="20.00")
    paths = [f"{PRODUCTS}?category=audio", f"{PRODUCTS}?in_stock=true&sort=-price", f"{PRODUCTS}/count?in_stock=true"]
    for path in paths:
        assert client.get(path).headers["X-Cache"] == "MISS"
    one = f"{PRODUCTS}/{product['id']}"
    assert client.patch(one, json={"stock": 9, "description": "new words"}, headers=AUTH).status_code == 200
    for path in paths:
        response = client.get(path)
        assert response.headers["X-Cache"] == "HIT" and response.get_json() == _truth(flask_app, path)
    # Moving it out of stock changes the in_stock filter's members: those two are recomputed.
    assert client.patch(one, json={"stock": 0}, headers=AUTH).status_code == 200
    assert [client.get(p).headers["X-Cache"] for p in paths] == ["HIT", "MISS", "MISS"]
    for path in paths:
        assert client.get(path).get_json() == _truth(flask_app, path)


def test_lists_cached_before_the_filter_registry_vanished_are_never_served(
    app: tuple[Flask, EventCounter], redis_server: RedisServer
) -> None:
    """The registry is deleted (evicted, or purged by a new cache epoch while traffic goes on).

    A write made meanwhile compares itself against no filter and bumps nothing, so the
    pages and counts cached before must become unreachable on their own: the next read,
    finding no registry, moves the global generation forward.
    """
    flask_app, _ = app
    client = flask_app.test_client()
    rng = random.Random(11)
    product = _create(client, rng, 0, category="audio", stock=4, price="20.00")
    paths = [f"{PRODUCTS}?category=audio", f"{PRODUCTS}/count?in_stock=true"]
    for path in paths:
        client.get(path)
        assert client.get(path).headers["X-Cache"] == "HIT"
    redis_server.client().delete(services_of(flask_app).require_cache().keys.filter_registry)

    one = f"{PRODUCTS}/{product['id']}"
    assert client.patch(one, json={"stock": 0, "price": "25.00"}, headers=AUTH).status_code == 200
    for path in paths:
        response = client.get(path)
        assert response.headers["X-Cache"] == "MISS", path
        assert response.get_json() == _truth(flask_app, path)
