"""Lists, counts, categories and products under concurrent writes on a real redis-server, judged whole.

Writer threads move products between categories and change their prices and stock;
reader threads read products, pages filtered by category, counts and the categories.
Every answer is judged whole by tests/support/judge.py: it must be what ONE catalog
state the writes produced gives (a page's ids, order, versions, bodies and total; a
count; the category counts), given when the read began and ended. The one-writer traffic
also runs against the Procfile's web with two gunicorn workers (over HTTP, on nx-27017),
where the write and the read of one product are served by different processes. The two-writer test
is also judged per read by the write ledger (tests/support/ledger.py): a product or
list item older than a write completed before the read began is stale; so is a list
item shown under a category its returned version no longer has.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from tests.conftest import TOKEN, make_app, make_settings
from tests.support.events import EventCounter
from tests.support.judge import CatalogHistory, CatalogJudge
from tests.support.judged_traffic import (
    PRODUCTS,
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
from tests.support.ledger import WriteLedger
from tests.support.mongo_server import MongoForTests, unique_database_name
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CATEGORIES = ("red", "blue")
THREE_CATEGORIES = ("red", "blue", "green")


def _app_with_products(
    redis_url: str, mongodb_uri: str, categories: Sequence[str]
) -> tuple[Flask, list[dict[str, Any]]]:
    """The app on real Redis and the wire-protocol MongoDB, with 24 products spread over `categories`."""
    # A real wire-protocol server, not mongomock: concurrent findAndModify on one document must
    # be atomic, as MongoDB's is (mongomock's in-process updates are not, and break versions).
    app = make_app(make_settings(redis_url=redis_url, mongodb_uri=mongodb_uri), events=EventCounter())
    return app, seed_products(app.test_client(), AUTH, categories, 24)


def _mover(
    client: ApiClient,
    history: CatalogHistory,
    ids: list[str],
    stop: threading.Event,
    failures: list[str],
    seed: int = 7,
) -> None:
    """One writer: PATCH a product's category (one of three) and price, one write at a time, short gaps."""
    rng = random.Random(seed)
    while not stop.is_set():
        pid = rng.choice(ids)
        change = {"category": rng.choice(THREE_CATEGORIES), "price": f"{rng.randint(5, 60)}.{rng.randint(0, 99):02d}"}
        if patch_recorded(client, AUTH, history, pid, change) is None:
            failures.append(f"PATCH {pid}")
        time.sleep(rng.uniform(0, 0.005))


def test_one_writer_moving_products_between_three_categories_every_answer_is_one_state(
    redis_server: RedisServer, shared_mongodb_uri: str
) -> None:
    # The reported hole: a page served from Redis mixed two moments (ids from before a move,
    # the moved item's body from after it). One writer, so the states form a line.
    app, bodies = _app_with_products(redis_server.url, shared_mongodb_uri, THREE_CATEGORIES)
    ids = [b["id"] for b in bodies]
    history = CatalogHistory(bodies)
    judge = CatalogJudge(history)
    reader = JudgedReader(app.test_client, judge, ids, THREE_CATEGORIES, {"page_size": 100})
    stop = threading.Event()
    write_failures: list[str] = []

    threads = [threading.Thread(target=_mover, args=(app.test_client(), history, ids, stop, write_failures))]
    threads += [threading.Thread(target=reader.run, args=(200 + s, stop)) for s in range(6)]
    run_threads(threads, stop, 8)
    print(judge_report(judge, history))
    assert not write_failures and not reader.failures, (write_failures[:5], reader.failures[:5])
    assert min(judge.judged.get(k, 0) for k in ("product", "page", "count", "categories")) > 10  # the test did run
    assert history.counts().get("done", 0) > 50
    assert judge.mismatches == [], judge_report(judge, history)


@pytest.mark.e2e
@pytest.mark.slow
def test_one_writer_across_two_web_processes_every_answer_is_one_state(
    redis_server: RedisServer, wire_mongo: MongoForTests, tmp_path: Path
) -> None:
    # The same traffic served by the Procfile's web with two gunicorn workers on nx-27017: a
    # write one worker commits and a read the other serves meet only in Redis and MongoDB.
    database = unique_database_name("jj_two_web")
    try:
        with web_processes(redis_server.url, wire_mongo.uri_for(database), TOKEN, tmp_path) as (url, web):
            bodies = seed_products(HttpClient(url), AUTH, THREE_CATEGORIES, 24)
            ids = [b["id"] for b in bodies]
            history = CatalogHistory(bodies)
            judge = CatalogJudge(history)
            reader = JudgedReader(lambda: HttpClient(url), judge, ids, THREE_CATEGORIES, {"page_size": 100})
            stop = threading.Event()
            write_failures: list[str] = []
            threads = [threading.Thread(target=_mover, args=(HttpClient(url), history, ids, stop, write_failures))]
            threads += [threading.Thread(target=reader.run, args=(300 + s, stop)) for s in range(6)]
            # Until 400 pages were judged and 300 writes done (about 10 s on a quiet 2-core VM), 30 s at most.
            run_threads(
                threads, stop, 30, lambda: judge.judged.get("page", 0) >= 400 and history.counts().get("done", 0) >= 300
            )
            pages_by_worker = served_by_worker(web, f"GET {PRODUCTS}?category=")
    finally:
        wire_mongo.drop_database(database)
    print(f"pages served by worker: {dict(pages_by_worker)}")
    print(judge_report(judge, history))
    assert not write_failures and not reader.failures, (write_failures[:5], reader.failures[:5])
    # Both workers served pages, and enough of everything was judged (counts, not timings).
    assert len(pages_by_worker) == 2 and min(pages_by_worker.values()) >= 20, pages_by_worker
    assert judge.judged.get("page", 0) >= 200
    assert min(judge.judged.get(k, 0) for k in ("product", "count", "categories")) >= 100
    assert history.counts().get("done", 0) >= 150
    assert judge.mismatches == [], judge_report(judge, history)


def test_no_stale_product_list_or_count_read_under_concurrent_writes(
    redis_server: RedisServer, shared_mongodb_uri: str
) -> None:
    app, bodies = _app_with_products(redis_server.url, shared_mongodb_uri, CATEGORIES)
    ids = [b["id"] for b in bodies]
    ledger = WriteLedger()
    for pid in ids:
        ledger.record_write(pid, 1, time.monotonic())
    history = CatalogHistory(bodies)
    judge = CatalogJudge(history)
    reader = JudgedReader(app.test_client, judge, ids, CATEGORIES, {"sort": "price", "page_size": 100})
    stop = threading.Event()
    failures: list[str] = []
    stale_membership: list[tuple[str, int, str, str]] = []
    reads = {"product": 0, "page": 0}
    lock = threading.Lock()

    def writer(seed: int) -> None:
        client, rng = app.test_client(), random.Random(seed)
        while not stop.is_set():
            pid = rng.choice(ids)
            change: dict[str, Any] = rng.choice(
                [
                    {"category": rng.choice(CATEGORIES)},
                    {"price": f"{rng.randint(5, 60)}.00"},
                    {"stock": rng.randint(0, 3)},
                ]
            )
            product = patch_recorded(client, AUTH, history, pid, change)
            if product is None:
                failures.append("write failed")
                continue
            ledger.record_write(pid, product["version"], time.monotonic())

    def per_read(kind: str, what: str, began: float, answer: Any) -> None:
        """The ledger's judgment, per product version, next to the judge's."""
        with lock:
            reads[kind] += 1
        if kind == "product":
            ledger.check_read(what, began, answer["version"])
            return
        items, x_cache = answer
        ledger.check_items([(i["id"], i["version"]) for i in items], began, f"list {what}")
        for item in items:
            moved_before_read = (ledger.newest_before(item["id"], began) or 0) >= item["version"]
            if item["category"] != what and moved_before_read:
                # Which path served it says where to look: Redis (HIT) or MongoDB (MISS/BYPASS).
                stale_membership.append((item["id"], item["version"], what, x_cache or ""))

    threads = [threading.Thread(target=writer, args=(s,)) for s in range(2)]
    threads += [threading.Thread(target=reader.run, args=(100 + s, stop, per_read)) for s in range(4)]
    run_threads(threads, stop, 8)
    print(f"reads {reads}, writes {ledger.writes_recorded - len(ids)}, judged per item {ledger.reads_checked}")
    print(judge_report(judge, history))
    assert not failures and not reader.failures, (failures[:5], reader.failures[:5])
    assert min(judge.judged.get(k, 0) for k in ("product", "page", "count", "categories")) > 10  # the test did run
    assert ledger.writes_recorded > len(ids) + 20
    assert ledger.stale == [] and stale_membership == []
    assert judge.mismatches == [], judge_report(judge, history)
    # Once the writes stop, every cached count and page equals the database.
    client = app.test_client()
    for category in CATEGORIES:
        page = client.get(f"{PRODUCTS}?category={category}&sort=price&page_size=100").get_json()
        assert all(item["category"] == category for item in page)
        count = client.get(f"{PRODUCTS}/count?category={category}").get_json()["count"]
        assert count == len(page)
    assert sum(client.get(f"{PRODUCTS}/count?category={c}").get_json()["count"] for c in CATEGORIES) == len(ids)
