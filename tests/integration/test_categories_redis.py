"""The category list against a real redis-server: cached like a count, never left older than a write.

The category list is a cached result of the unfiltered set under its `members` and
`group.category` generations (products/catalog.py). A write that lands while a
read is between its MongoDB aggregate and its fill bumps a generation the fill was
computed under, so the older aggregate is refused (scripts.FILL_FILTERED); the next
read is a miss and sees the write.

Under concurrent writers that empty categories and make new ones (a category's last
product moves out; a product moves to a name no product had), every categories, count
and page answer is judged whole (tests/support/judge.py) against the states the writes
produced.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from jollyjet.extensions import Services, services_of
from jollyjet.products.record import CategoryCount, Read
from tests.conftest import TOKEN, make_app, make_settings
from tests.support.events import EventCounter
from tests.support.factories import product_values
from tests.support.judge import CatalogHistory, CatalogJudge
from tests.support.judged_traffic import (
    ApiClient,
    HttpClient,
    JudgedReader,
    judge_report,
    patch_recorded,
    run_threads,
    seed_products,
    served_by_worker,
    web_processes,
)
from tests.support.mongo_server import MongoForTests, unique_database_name
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.integration
CATEGORIES = "/api/v1/categories"
CATEGORIES_GET = f"GET {CATEGORIES} "
AUTH = {"Authorization": f"Bearer {TOKEN}"}


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


def _appearances(initial: dict[str, str], moves: list[tuple[float, str, str]]) -> tuple[int, int]:
    """How often a category appeared (its first product moved in) and disappeared (its last moved out)."""
    where = dict(initial)
    shown = set(where.values())
    appeared = disappeared = 0
    for _, pid, category in sorted(moves):
        where[pid] = category
        now = set(where.values())
        appeared += len(now - shown)
        disappeared += len(shown - now)
        shown = now
    return appeared, disappeared


NAMES = ("audio", "books", "garden", "toys")


def _categories_moving(client: Callable[[], ApiClient], cap_s: float) -> tuple[CatalogJudge, int, int]:
    """Two writers move eight products so categories empty and new ones appear, six readers judged whole.

    The products start over three of the four names; each writer moves its own four, and one
    move in five goes to a name no product had. Runs until 500 categories answers were judged
    and 500 moves done, or cap_s. Returns the judge and how often a category appeared and
    disappeared; asserts that no request failed.
    """
    bodies = seed_products(client(), AUTH, NAMES[:3], 8)
    ids = [b["id"] for b in bodies]
    history = CatalogHistory(bodies)
    judge = CatalogJudge(history)
    # Mostly the category list; counts and pages of the four names (empty ones too).
    kinds = ("categories", "categories", "count", "page")
    reader = JudgedReader(client, judge, ids, NAMES, {"page_size": 100}, kinds)
    stop = threading.Event()
    moves: list[tuple[float, str, str]] = []  # (completed, product, category), appended from both writers
    failures: list[str] = []

    def writer(seed: int, mine: list[str]) -> None:
        api, rng = client(), random.Random(seed)
        while not stop.is_set():
            pid = rng.choice(mine)
            category = f"new-{seed}-{len(moves)}" if rng.random() < 0.2 else rng.choice(NAMES)
            if patch_recorded(api, AUTH, history, pid, {"category": category}) is None:
                failures.append(f"PATCH {pid}")
            else:
                moves.append((time.monotonic(), pid, category))
            time.sleep(rng.uniform(0, 0.005))

    threads = [threading.Thread(target=writer, args=(s, ids[s::2])) for s in range(2)]
    threads += [threading.Thread(target=reader.run, args=(400 + s, stop)) for s in range(6)]
    run_threads(threads, stop, cap_s, lambda: judge.judged.get("categories", 0) >= 500 and len(moves) >= 500)
    appeared, disappeared = _appearances({b["id"]: b["category"] for b in bodies}, moves)
    print(f"moves {len(moves)}: categories appeared {appeared} times, disappeared {disappeared} times")
    print(judge_report(judge, history))
    assert not failures and not reader.failures, (failures[:5], reader.failures[:5])
    return judge, appeared, disappeared


def test_categories_appearing_and_disappearing_under_moving_products_every_answer_is_one_state(
    redis_server: RedisServer, shared_mongodb_uri: str
) -> None:
    app = make_app(make_settings(redis_url=redis_server.url, mongodb_uri=shared_mongodb_uri), events=EventCounter())
    judge, appeared, disappeared = _categories_moving(app.test_client, 20)
    assert appeared >= 20 and disappeared >= 20, (appeared, disappeared)  # the test did what it says
    assert judge.judged.get("categories", 0) >= 200
    assert min(judge.judged.get(k, 0) for k in ("count", "page")) >= 50
    assert judge.mismatches == [], judge_report(judge, judge.history)


@pytest.mark.e2e
@pytest.mark.slow
def test_categories_under_moving_products_across_two_web_processes_every_answer_is_one_state(
    redis_server: RedisServer, wire_mongo: MongoForTests, tmp_path: Path
) -> None:
    # The same traffic on the Procfile's web with two gunicorn workers: one worker's aggregate
    # and fill race the other's writes truly in parallel, not between one interpreter's threads.
    database = unique_database_name("jj_categories")
    try:
        with web_processes(redis_server.url, wire_mongo.uri_for(database), TOKEN, tmp_path) as (url, web):
            judge, appeared, disappeared = _categories_moving(lambda: HttpClient(url), 30)
            by_worker = served_by_worker(web, CATEGORIES_GET)
    finally:
        wire_mongo.drop_database(database)
    print(f"categories served by worker: {dict(by_worker)}")
    assert len(by_worker) == 2 and min(by_worker.values()) >= 20, by_worker
    assert appeared >= 20 and disappeared >= 20, (appeared, disappeared)
    assert judge.judged.get("categories", 0) >= 200
    assert min(judge.judged.get(k, 0) for k in ("count", "page")) >= 50
    assert judge.mismatches == [], judge_report(judge, judge.history)
