"""Lists, counts, categories and products under concurrent writes on a real redis-server, judged whole.

Writer threads move products between categories and change their prices and stock;
reader threads read products, pages filtered by category, counts and the categories.
Every answer is judged whole by tests/support/judge.py: it must be what ONE catalog
state the writes produced gives (a page's ids, order, versions, bodies and total; a
count; the category counts), given when the read began and ended. The two-writer test
is also judged per read by the write ledger (tests/support/ledger.py): a product or
list item older than a write completed before the read began is stale; so is a list
item shown under a category its returned version no longer has.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient

from jollyjet.cache.events import EventCounter
from tests.conftest import TOKEN, make_app, make_settings
from tests.support.factories import product_payload
from tests.support.judge import CatalogHistory, CatalogJudge
from tests.support.ledger import WriteLedger
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PRODUCTS = "/api/v1/products"
CATEGORIES = ("red", "blue")
THREE_CATEGORIES = ("red", "blue", "green")


def _app_with_products(
    redis_url: str, mongodb_uri: str, categories: Sequence[str]
) -> tuple[Flask, list[dict[str, Any]]]:
    """The app on real Redis and the wire-protocol MongoDB, with 24 products spread over `categories`."""
    # A real wire-protocol server, not mongomock: concurrent findAndModify on one document must
    # be atomic, as MongoDB's is (mongomock's in-process updates are not, and break versions).
    app = make_app(make_settings(redis_url=redis_url, mongodb_uri=mongodb_uri), events=EventCounter())
    setup = app.test_client()
    bodies = []
    for n in range(24):
        payload = product_payload(category=categories[n % len(categories)], price=f"{10 + n}.00", stock=n % 3)
        response = setup.post(PRODUCTS, json=payload, headers=AUTH)
        assert response.status_code == 201
        bodies.append(response.get_json())
    return app, bodies


def _patch(client: FlaskClient, history: CatalogHistory, pid: str, change: dict[str, Any]) -> dict[str, Any] | None:
    """One PATCH recorded in the history; the body it returned, or None when it failed."""
    token = history.begin_write(pid, change)
    response = client.patch(f"{PRODUCTS}/{pid}", json=change, headers=AUTH)
    if response.status_code == 200:
        history.complete_write(token, response.get_json())
        return dict(response.get_json())
    # A refusal did not happen; a 5xx may have committed before it failed.
    (history.unknown_write if response.status_code >= 500 else history.fail_write)(token)
    return None


class JudgedReader:
    """Reads of the four kinds, each judged whole; counts what it read."""

    def __init__(
        self, app: Flask, judge: CatalogJudge, ids: list[str], categories: Sequence[str], page: dict[str, Any]
    ) -> None:
        self.app, self.judge, self.ids, self.categories = app, judge, ids, categories
        self.page_query = page  # sort and page size of the list reads (the category is drawn)
        self.failures: list[str] = []
        self.lock = threading.Lock()

    def run(self, seed: int, stop: float, also: Callable[[str, str, float, Any], None] | None = None) -> None:
        """Read until `stop`; `also(kind, what, began, answer)` sees each 200 answer too."""
        client, rng = self.app.test_client(), random.Random(seed)
        while time.monotonic() < stop:
            kind = rng.choice(("product", "page", "count", "categories"))
            category = rng.choice(self.categories)
            began = time.monotonic()
            if kind == "product":
                pid = rng.choice(self.ids)
                response = client.get(f"{PRODUCTS}/{pid}")
                ended = time.monotonic()
                if self._failed(kind, response.status_code, (200, 404)):
                    continue
                answer = response.get_json() if response.status_code == 200 else None
                self.judge.product(pid, began, ended, response.status_code, answer, response.headers.get("X-Cache"))
                if also and answer:
                    also(kind, pid, began, answer)
            elif kind == "page":
                query = {"category": category, **self.page_query}
                response = client.get(f"{PRODUCTS}?{urlencode(query)}")
                ended = time.monotonic()
                if self._failed(kind, response.status_code):
                    continue
                total = json.loads(response.headers["X-Pagination"])["total"]
                items = response.get_json()
                self.judge.page(query, began, ended, items, total, response.headers.get("X-Cache"))
                if also:
                    also(kind, category, began, (items, response.headers.get("X-Cache")))
            elif kind == "count":
                response = client.get(f"{PRODUCTS}/count?category={category}")
                ended = time.monotonic()
                if self._failed(kind, response.status_code):
                    continue
                count = response.get_json()["count"]
                self.judge.count({"category": category}, began, ended, count, response.headers.get("X-Cache"))
            else:
                response = client.get("/api/v1/categories")
                ended = time.monotonic()
                if self._failed(kind, response.status_code):
                    continue
                self.judge.categories(began, ended, response.get_json(), response.headers.get("X-Cache"))

    def _failed(self, kind: str, status: int, expected: tuple[int, ...] = (200,)) -> bool:
        if status in expected:
            return False
        with self.lock:
            self.failures.append(f"{kind} {status}")
        return True


def _report(judge: CatalogJudge, history: CatalogHistory) -> str:
    """What the judge judged and found, for the test's output."""
    lines = [f"judged: {judge.summary()}; writes {history.counts()}"]
    lines += [str(m) for m in judge.examples()]
    return "\n".join(lines)


def test_one_writer_moving_products_between_three_categories_every_answer_is_one_state(
    redis_server: RedisServer, shared_mongodb_uri: str
) -> None:
    # The reported hole: a page served from Redis mixed two moments (ids from before a move,
    # the moved item's body from after it). One writer, so the states form a line.
    app, bodies = _app_with_products(redis_server.url, shared_mongodb_uri, THREE_CATEGORIES)
    ids = [b["id"] for b in bodies]
    history = CatalogHistory(bodies)
    judge = CatalogJudge(history)
    reader = JudgedReader(app, judge, ids, THREE_CATEGORIES, {"page_size": 100})
    stop = time.monotonic() + 8
    write_failures: list[str] = []

    def writer() -> None:
        client, rng = app.test_client(), random.Random(7)
        while time.monotonic() < stop:
            pid = rng.choice(ids)
            change = {
                "category": rng.choice(THREE_CATEGORIES),
                "price": f"{rng.randint(5, 60)}.{rng.randint(0, 99):02d}",
            }
            if _patch(client, history, pid, change) is None:
                write_failures.append(f"PATCH {pid}")
            time.sleep(rng.uniform(0, 0.005))

    threads = [threading.Thread(target=writer)]
    threads += [threading.Thread(target=reader.run, args=(200 + s, stop)) for s in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    print(_report(judge, history))
    assert not write_failures and not reader.failures, (write_failures[:5], reader.failures[:5])
    assert min(judge.judged.get(k, 0) for k in ("product", "page", "count", "categories")) > 10  # the test did run
    assert history.counts().get("done", 0) > 50
    assert judge.mismatches == [], _report(judge, history)


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
    reader = JudgedReader(app, judge, ids, CATEGORIES, {"sort": "price", "page_size": 100})
    stop = time.monotonic() + 8
    failures: list[str] = []
    stale_membership: list[tuple[str, int, str, str]] = []
    reads = {"product": 0, "page": 0}
    lock = threading.Lock()

    def writer(seed: int) -> None:
        client, rng = app.test_client(), random.Random(seed)
        while time.monotonic() < stop:
            pid = rng.choice(ids)
            change: dict[str, Any] = rng.choice(
                [
                    {"category": rng.choice(CATEGORIES)},
                    {"price": f"{rng.randint(5, 60)}.00"},
                    {"stock": rng.randint(0, 3)},
                ]
            )
            product = _patch(client, history, pid, change)
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
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    print(f"reads {reads}, writes {ledger.writes_recorded - len(ids)}, judged per item {ledger.reads_checked}")
    print(_report(judge, history))
    assert not failures and not reader.failures, (failures[:5], reader.failures[:5])
    assert min(judge.judged.get(k, 0) for k in ("product", "page", "count", "categories")) > 10  # the test did run
    assert ledger.writes_recorded > len(ids) + 20
    assert ledger.stale == [] and stale_membership == []
    assert judge.mismatches == [], _report(judge, history)
    # Once the writes stop, every cached count and page equals the database.
    client = app.test_client()
    for category in CATEGORIES:
        page = client.get(f"{PRODUCTS}?category={category}&sort=price&page_size=100").get_json()
        assert all(item["category"] == category for item in page)
        count = client.get(f"{PRODUCTS}/count?category={category}").get_json()["count"]
        assert count == len(page)
    assert sum(client.get(f"{PRODUCTS}/count?category={c}").get_json()["count"] for c in CATEGORIES) == len(ids)
