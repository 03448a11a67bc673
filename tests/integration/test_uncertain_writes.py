"""Writes whose MongoDB outcome the service never heard, and reads of ids MongoDB does not have.

On the wire-protocol MongoDB server behind a fault proxy and a real redis-server:
- MongoDB's replies are held past the app's socket timeout while PATCHes run: each
  commits, each answers 503. Afterwards every product, list page and count the service
  serves must equal what MongoDB holds (read directly), for as long as we look;
- 300 reads of one well-formed unknown id cost a handful of MongoDB queries
  (jollyjet_db_queries_total), not one each.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from bson import ObjectId
from flask.testing import FlaskClient

from jollyjet.ops.metrics import metrics
from tests.conftest import TOKEN, make_app, make_settings
from tests.support.factories import product_payload
from tests.support.fault_proxy import FaultProxy, fault_proxy
from tests.support.mongo_commands import COUNTER
from tests.support.mongo_server import MongoForTests, unique_database_name
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PRODUCTS = "/api/v1/products"
MONGODB_TIMEOUT_MS = 1000  # the app's socket timeout is then its floor, 5 s (jollyjet/db.py)
HELD_S = 6.5  # longer than that: every reply of the held writes is lost to the app
LOOK_S = 3.0


@pytest.fixture
def behind_proxy(wire_mongo: MongoForTests) -> Iterator[tuple[FaultProxy, str, str]]:
    """A fault proxy in front of the wire server: (proxy, the app's URI through it, the database name)."""
    database = unique_database_name()
    port = urlsplit(wire_mongo.uri_for(database)).port
    assert port is not None
    with fault_proxy(port) as proxy:
        yield proxy, f"mongodb://127.0.0.1:{proxy.port}/{database}", database
    wire_mongo.drop_database(database)


def _truth(wire_mongo: MongoForTests, database: str) -> dict[str, dict[str, Any]]:
    """Every product as MongoDB holds it: id -> {version, category}."""
    docs = wire_mongo.client()[database]["products"].find({}, {"version": 1, "category": 1})
    return {str(d["_id"]): {"version": d["version"], "category": d["category"]} for d in docs}


def _mismatches(client: FlaskClient, truth: dict[str, dict[str, Any]]) -> list[str]:
    """What the service answers that differs from MongoDB's state (no write runs meanwhile)."""
    found = []
    for pid, doc in truth.items():
        response = client.get(f"{PRODUCTS}/{pid}")
        body = response.get_json()
        if response.status_code != 200 or body["version"] != doc["version"]:
            found.append(f"product {pid}: {response.status_code} v{body.get('version')} != v{doc['version']}")
    for category in ("red", "blue"):
        want = sorted((pid, d["version"]) for pid, d in truth.items() if d["category"] == category)
        response = client.get(f"{PRODUCTS}?category={category}&page_size=100")
        got = sorted((i["id"], i["version"]) for i in response.get_json())
        if got != want:
            found.append(f"list {category} ({response.headers.get('X-Cache')}): {got} != {want}")
        count = client.get(f"{PRODUCTS}/count?category={category}").get_json()["count"]
        if count != len(want):
            found.append(f"count {category}: {count} != {len(want)}")
    return found


def test_writes_whose_mongodb_reply_is_lost_never_leave_an_older_state_served(
    redis_server: RedisServer, wire_mongo: MongoForTests, behind_proxy: tuple[FaultProxy, str, str]
) -> None:
    proxy, uri, database = behind_proxy
    settings = make_settings(redis_url=redis_server.url, mongodb_uri=uri, mongodb_timeout_ms=MONGODB_TIMEOUT_MS)
    app = make_app(settings)
    client = app.test_client()
    ids = []
    for n in range(6):
        response = client.post(PRODUCTS, json=product_payload(category="red", price=f"{10 + n}.00"), headers=AUTH)
        assert response.status_code == 201
        ids.append(response.get_json()["id"])
    truth = _truth(wire_mongo, database)
    for _ in range(2):  # cached: the second round is served from Redis
        assert _mismatches(client, truth) == []
    assert client.get(f"{PRODUCTS}/{ids[0]}").headers["X-Cache"] == "HIT"

    proxy.hold_replies(HELD_S)
    statuses: list[int] = []

    def move(pid: str) -> None:
        response = app.test_client().patch(
            f"{PRODUCTS}/{pid}", json={"category": "blue", "price": "99.00"}, headers=AUTH
        )
        statuses.append(response.status_code)

    writers = [threading.Thread(target=move, args=(pid,)) for pid in ids[:3]]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(30)
    proxy.heal()
    assert statuses and all(status == 503 for status in statuses), statuses

    truth = _truth(wire_mongo, database)
    # The writes sent before the first timeout committed (the driver cancels the ones still queued).
    assert sum(1 for doc in truth.values() if doc["category"] == "blue") >= 1
    found: list[str] = []
    rounds = 0
    deadline = time.monotonic() + LOOK_S
    while time.monotonic() < deadline:
        found += _mismatches(client, truth)
        rounds += 1
    print(f"{rounds} rounds of reads after the lost replies, {len(found)} answers differed from MongoDB")
    assert found == [], found[:5]


def _db_queries() -> float:
    return sum(
        s.value for metric in metrics().db_queries.collect() for s in metric.samples if s.name.endswith("_total")
    )


def test_repeated_reads_of_an_unknown_id_cost_a_few_queries(redis_server: RedisServer, shared_mongodb_uri: str) -> None:
    app = make_app(make_settings(redis_url=redis_server.url, mongodb_uri=shared_mongodb_uri))
    client = app.test_client()
    unknown = str(ObjectId())
    assert client.get(f"{PRODUCTS}/{unknown}").status_code == 404
    # jollyjet_db_queries_total is process-wide and also counts the background polls
    # (pending repairs, the current Redis server) of this and earlier apps: the listener,
    # which sees the same commands with their collections, says which ones those were.
    before = _db_queries()
    COUNTER.counts.clear()
    COUNTER.on = True
    try:
        statuses = {client.get(f"{PRODUCTS}/{unknown}").status_code for _ in range(300)}
    finally:
        COUNTER.on = False
    spent = _db_queries() - before
    polls = sum(n for (_, collection), n in COUNTER.counts.items() if collection != "products")
    print(f"300 reads of an unknown id: {spent:.0f} MongoDB queries, {polls} of them polls ({dict(COUNTER.counts)})")
    assert statuses == {404}
    assert spent - polls <= 3
    # A create of that id is never hidden by the cached absence (ids are made by the server,
    # so this is the version guard's business: a create writes version 1 over absence's 0).
    created = client.post(PRODUCTS, json=product_payload(), headers=AUTH).get_json()
    assert client.get(f"{PRODUCTS}/{created['id']}").status_code == 200
