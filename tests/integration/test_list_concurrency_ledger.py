"""Lists, counts and products under concurrent writes on a real redis-server, judged by the write ledger.

Writer threads move products between two categories and change their prices and stock;
reader threads read products and pages filtered by category (sorted by price) and
counts. Judged per read (tests/support/ledger.py): a product or list item older than a
write completed before the read began is stale; so is a list item shown under a
category its returned version no longer has, when the write that moved it completed
before the read began (stale membership; with pages stored as ids, this is how a missed
invalidation would show).
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import pytest

from jollyjet.cache.events import EventCounter
from tests.conftest import TOKEN, make_app, make_settings
from tests.support.factories import product_payload
from tests.support.ledger import WriteLedger
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PRODUCTS = "/api/v1/products"
CATEGORIES = ("red", "blue")


def test_no_stale_product_list_or_count_read_under_concurrent_writes(
    redis_server: RedisServer, shared_mongodb_uri: str
) -> None:
    # A real wire-protocol server, not mongomock: concurrent findAndModify on one document must
    # be atomic, as MongoDB's is (mongomock's in-process updates are not, and break versions).
    app = make_app(make_settings(redis_url=redis_server.url, mongodb_uri=shared_mongodb_uri), events=EventCounter())
    setup = app.test_client()
    ids = []
    for n in range(24):
        payload = product_payload(category=CATEGORIES[n % 2], price=f"{10 + n}.00", stock=n % 3)
        response = setup.post(PRODUCTS, json=payload, headers=AUTH)
        assert response.status_code == 201
        ids.append(response.get_json()["id"])
    ledger = WriteLedger()
    for pid in ids:
        ledger.record_write(pid, 1, time.monotonic())
    stop = time.monotonic() + 8
    failures: list[str] = []
    stale_membership: list[tuple[str, int, str, str]] = []
    reads = {"product": 0, "list": 0, "count": 0}
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
            response = client.patch(f"{PRODUCTS}/{pid}", json=change, headers=AUTH)
            if response.status_code != 200:
                failures.append(f"write {response.status_code}")
                continue
            ledger.record_write(pid, response.get_json()["version"], time.monotonic())

    def reader(seed: int) -> None:
        client, rng = app.test_client(), random.Random(seed)
        while time.monotonic() < stop:
            began = time.monotonic()
            kind = rng.choice(("product", "list", "count"))
            category = rng.choice(CATEGORIES)
            if kind == "product":
                pid = rng.choice(ids)
                body = client.get(f"{PRODUCTS}/{pid}").get_json()
                ledger.check_read(pid, began, body["version"])
            elif kind == "list":
                response = client.get(f"{PRODUCTS}?category={category}&sort=price&page_size=100")
                if response.status_code != 200:
                    failures.append(f"list {response.status_code}")
                    continue
                items = response.get_json()
                ledger.check_items([(i["id"], i["version"]) for i in items], began, f"list {category}")
                for item in items:
                    moved_before_read = (ledger.newest_before(item["id"], began) or 0) >= item["version"]
                    if item["category"] != category and moved_before_read:
                        # Which path served it says where to look: Redis (HIT) or MongoDB (MISS/BYPASS).
                        stale_membership.append(
                            (item["id"], item["version"], category, response.headers.get("X-Cache", ""))
                        )
            else:
                response = client.get(f"{PRODUCTS}/count?category={category}")
                if response.status_code != 200 or not 0 <= response.get_json()["count"] <= len(ids):
                    failures.append(f"count {response.status_code} {response.get_data()[:80]!r}")
            with lock:
                reads[kind] += 1

    threads = [threading.Thread(target=writer, args=(s,)) for s in range(2)]
    threads += [threading.Thread(target=reader, args=(100 + s,)) for s in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    print(f"reads {reads}, writes {ledger.writes_recorded - len(ids)}, judged {ledger.reads_checked}")
    assert not failures, failures[:5]
    assert min(reads.values()) > 10 and ledger.writes_recorded > len(ids) + 20  # the test did run
    assert ledger.stale == [] and stale_membership == []
    # Once the writes stop, every cached count and page equals the database.
    client = app.test_client()
    for category in CATEGORIES:
        page = client.get(f"{PRODUCTS}?category={category}&sort=price&page_size=100").get_json()
        assert all(item["category"] == category for item in page)
        count = client.get(f"{PRODUCTS}/count?category={category}").get_json()["count"]
        assert count == len(page)
    assert sum(client.get(f"{PRODUCTS}/count?category={c}").get_json()["count"] for c in CATEGORIES) == len(ids)
