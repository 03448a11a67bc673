"""Conditional GETs on a real redis-server: a 304 is exactly as fresh as the 200 it stands for.

An ETag older than the current state never gets a 304: after a write, the old tag gets a 200
with the new answer (the old answer may still sit in Redis under the generations it was
stored with; the tag is judged against what this request read, never against that). Under
concurrent writes, every 304 is judged whole by tests/support/judge.py as the answer its tag
was issued for: it must be one catalog state the writes produced while the request ran,
exactly as a 200's body must.
"""

from __future__ import annotations

import json
import random
import threading
import time
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import TOKEN, make_app, make_settings
from tests.support.events import EventCounter
from tests.support.factories import product_payload
from tests.support.judge import CatalogHistory, CatalogJudge
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PRODUCTS = "/api/v1/products"
CATEGORIES = ("red", "blue", "green")
WRITES = 80


def _create(client: FlaskClient, **fields: Any) -> dict[str, Any]:
    response = client.post(PRODUCTS, json=product_payload(**fields), headers=AUTH)
    assert response.status_code == 201
    body: dict[str, Any] = response.get_json()
    return body


def test_after_a_write_the_old_tag_gets_the_new_answer(redis_app: Flask) -> None:
    client = redis_app.test_client()
    first = _create(client, category="red", price="3.00")
    _create(client, category="red", price="4.00")
    paths = {
        "product": f"{PRODUCTS}/{first['id']}",
        "list": f"{PRODUCTS}?category=red&sort=price",
        "count": f"{PRODUCTS}/count?category=red",
        "categories": "/api/v1/categories",
    }
    for step in range(1, 6):
        # Read twice: the second read is a hit, so the answer the tag names is in Redis.
        tags = {kind: client.get(path).headers["ETag"] for kind, path in paths.items()}
        assert all(client.get(path).headers["X-Cache"] == "HIT" for path in paths.values())
        # A write that changes every answer: the product's stock, the red page, count and categories.
        patched = client.patch(paths["product"], json={"stock": 100 + step}, headers=AUTH)
        assert patched.status_code == 200
        _create(client, category="red", price=f"{50 + step}.00")
        for kind, path in paths.items():
            response = client.get(path, headers={"If-None-Match": tags[kind]})
            assert response.status_code == 200, (step, kind)
            assert response.headers["ETag"] != tags[kind], (step, kind)
            again = client.get(path, headers={"If-None-Match": response.headers["ETag"]})
            assert again.status_code == 304 and again.headers["ETag"] == response.headers["ETag"], (step, kind)
        assert client.get(paths["product"]).get_json()["stock"] == 100 + step
        listed = client.get(paths["list"]).get_json()
        assert listed[0]["stock"] == 100 + step and len(listed) == 2 + step
        assert client.get(paths["count"]).get_json() == {"count": 2 + step}
        assert {"category": "red", "count": 2 + step} in client.get(paths["categories"]).get_json()


class ConditionalReader:
    """Reads the four kinds with If-None-Match (the newest tag it holds, sometimes an older one);
    judges every 200 by its body and every 304 by the answer its tag was issued for."""

    def __init__(self, app: Flask, judge: CatalogJudge, ids: list[str]) -> None:
        self.app, self.judge, self.ids = app, judge, ids
        self.lock = threading.Lock()
        self.failures: list[str] = []
        self.not_modified: dict[str, int] = {}

    def run(self, seed: int, done: threading.Event) -> None:
        client, rng = self.app.test_client(), random.Random(seed)
        seen: dict[str, list[tuple[str, Any]]] = {}  # path → [(tag, answer)], oldest first
        while not done.is_set():
            kind = rng.choice(("product", "page", "count", "categories"))
            category = rng.choice(CATEGORIES)
            path, query = {
                "product": (f"{PRODUCTS}/{rng.choice(self.ids)}", {}),
                "page": (f"{PRODUCTS}?{urlencode({'category': category, 'sort': 'price'})}", {"category": category}),
                "count": (f"{PRODUCTS}/count?category={category}", {"category": category}),
                "categories": ("/api/v1/categories", {}),
            }[kind]
            known = seen.get(path, [])
            sent = rng.choice(known) if known and rng.random() < 0.3 else (known[-1] if known else None)
            headers = {"If-None-Match": sent[0]} if sent else {}
            began = time.monotonic()
            response = client.get(path, headers=headers)
            ended = time.monotonic()
            if response.status_code == 200:
                answer = self._answer(kind, response)
                seen.setdefault(path, []).append((response.headers["ETag"], answer))
            elif response.status_code == 304 and sent is not None and response.headers["ETag"] == sent[0]:
                answer = sent[1]
                with self.lock:
                    self.not_modified[kind] = self.not_modified.get(kind, 0) + 1
            else:
                with self.lock:
                    self.failures.append(f"{kind} {response.status_code} sent {sent and sent[0]}")
                continue
            self._judge(kind, path, query, began, ended, answer, response.headers.get("X-Cache"))

    @staticmethod
    def _answer(kind: str, response: Any) -> Any:
        if kind == "page":
            return response.get_json(), json.loads(response.headers["X-Pagination"])["total"]
        if kind == "count":
            return response.get_json()["count"]
        return response.get_json()

    def _judge(
        self, kind: str, path: str, query: dict[str, Any], began: float, ended: float, answer: Any, x_cache: Any
    ) -> None:
        if kind == "product":
            self.judge.product(path.rsplit("/", 1)[1], began, ended, 200, answer, x_cache)
        elif kind == "page":
            items, total = answer
            self.judge.page({**query, "sort": "price"}, began, ended, items, total, x_cache)
        elif kind == "count":
            self.judge.count(query, began, ended, answer, x_cache)
        else:
            self.judge.categories(began, ended, answer, x_cache)


def test_under_concurrent_writes_every_304_is_one_current_state(
    redis_server: RedisServer, shared_mongodb_uri: str
) -> None:
    # The wire-protocol MongoDB, as in test_list_concurrency_ledger.py: one writer, so the
    # states form a line and the judge's candidate states stay few.
    app = make_app(make_settings(redis_url=redis_server.url, mongodb_uri=shared_mongodb_uri), events=EventCounter())
    setup = app.test_client()
    bodies = [_create(setup, category=CATEGORIES[n % 3], price=f"{10 + n}.00", stock=n % 3) for n in range(12)]
    ids = [b["id"] for b in bodies]
    history = CatalogHistory(bodies)
    judge = CatalogJudge(history)
    reader = ConditionalReader(app, judge, ids)
    done = threading.Event()
    write_failures: list[str] = []

    def writer() -> None:
        client, rng = app.test_client(), random.Random(11)
        try:
            for _ in range(WRITES):
                pid = rng.choice(ids)
                change = rng.choice([{"category": rng.choice(CATEGORIES)}, {"stock": rng.randint(0, 3)}])
                token = history.begin_write(pid, change)
                response = client.patch(f"{PRODUCTS}/{pid}", json=change, headers=AUTH)
                if response.status_code != 200:
                    history.unknown_write(token)
                    write_failures.append(f"PATCH {response.status_code}")
                    continue
                history.complete_write(token, response.get_json())
                # Room between writes for reads to see each state, and to revalidate it.
                time.sleep(rng.uniform(0.005, 0.03))
        finally:
            done.set()

    threads = [threading.Thread(target=writer)]
    threads += [threading.Thread(target=reader.run, args=(300 + s, done)) for s in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    report = f"judged: {judge.summary()}; 304s {reader.not_modified}; writes {history.counts()}"
    print(report)
    assert not write_failures and not reader.failures, (write_failures[:5], reader.failures[:5])
    assert history.counts().get("done", 0) == WRITES
    # The test did test something: each kind was revalidated many times.
    assert min(reader.not_modified.get(k, 0) for k in ("product", "page", "count", "categories")) > 10, report
    assert judge.mismatches == [], "\n".join([report, *map(str, judge.examples())])
