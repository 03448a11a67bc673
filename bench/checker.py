"""The stale-read checker: writes and reads alongside the load, every answer judged whole (tests/support/judge.py).

It works on its own category (the load never touches it), so every write there is in the
judge's history, which starts from the category's page read before the first write. Each
cycle reads, updates and reads a product; every eighth cycle also reads the page, deletes
the product it created last time (then reads it and the page) and creates one.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
from urllib3 import BaseHTTPResponse
from urllib3.exceptions import HTTPError

from bench.measure import HttpClient
from bench.workload import CHECKER_CATEGORY, CHECKER_PREFIX, product_id
from tests.support.judge import DELETE, CatalogHistory, CatalogJudge

LIST_QUERY = {"category": CHECKER_CATEGORY, "page_size": 100}
LIST_PATH = f"/api/v1/products?category={CHECKER_CATEGORY}&page_size=100"


class Checker:
    """One client, one judge; cycle() runs one round of writes and judged reads."""

    def __init__(self, client: HttpClient, products: int) -> None:
        self.client = client
        self.ids = [product_id(CHECKER_PREFIX, i) for i in range(products)]  # seeded by workload.documents
        self.errors = self.cycles = self.requests = 0
        self.created: str | None = None
        self.nonce = uuid.uuid4().hex[:8]
        self.judge: CatalogJudge | None = None  # made by the first cycle, from the category's page

    def send(self, method: str, path: str, body: bytes | None = None) -> tuple[BaseHTTPResponse, float, float]:
        """One request: its reply, when it was sent and when the answer was read."""
        began = time.monotonic()
        reply = self.client.send(method, path, body)
        self.requests += 1
        return reply, began, time.monotonic()

    def start(self) -> CatalogJudge:
        """The judge, over the category as it is before the checker's first write."""
        if self.judge is None:
            reply, *_ = self.send("GET", LIST_PATH)
            items = orjson.loads(reply.data) if reply.status == 200 else None
            if items is None or int(orjson.loads(reply.headers["x-pagination"])["total"]) != len(items):
                raise RuntimeError(f"the checker's category could not be read whole as one page: {reply.status}")
            self.judge = CatalogJudge(CatalogHistory(items))
        return self.judge

    def read(self, product_id: str) -> None:
        """GET one product and judge it."""
        judge = self.start()
        reply, began, ended = self.send("GET", f"/api/v1/products/{product_id}")
        if reply.status in (200, 404):
            body = orjson.loads(reply.data) if reply.status == 200 else None
            judge.product(product_id, began, ended, reply.status, body, reply.headers.get("x-cache"))
        else:
            self.errors += 1

    def read_list(self) -> None:
        """GET the checker category's page and judge it whole."""
        judge = self.start()
        reply, began, ended = self.send("GET", LIST_PATH)
        if reply.status != 200:
            self.errors += 1
            return
        total = int(orjson.loads(reply.headers["x-pagination"])["total"])
        judge.page(LIST_QUERY, began, ended, orjson.loads(reply.data), total, reply.headers.get("x-cache"))

    def write(self, method: str, path: str, change: dict[str, Any] | None, product_id: str | None) -> dict[str, Any]:
        """Send a write (recorded in the judge's history); the product it left ({} for a delete or a failure)."""
        history = self.start().history
        token = history.begin_write(product_id, DELETE if change is None else change)
        try:
            reply, _, completed = self.send(method, path, None if change is None else orjson.dumps(change))
        except (OSError, HTTPError):
            history.unknown_write(token)  # sent, never answered
            raise
        if reply.status not in (200, 201, 204):
            self.errors += 1
            # A refusal or a write the bulkhead shed (503 "overloaded: ...") never reached MongoDB; other 5xx may have.
            failed = 400 <= reply.status < 500 or (reply.status == 503 and b'"message":"overloaded:' in reply.data)
            (history.fail_write if failed else history.unknown_write)(token)
            return {}
        product = orjson.loads(reply.data) if reply.data else {}
        history.complete_write(token, product or None, at=completed)
        return product

    def cycle(self) -> None:
        """Read, update, read one product; every eighth cycle a page, a delete and a create."""
        pid = self.ids[self.cycles % len(self.ids)]
        self.read(pid)
        self.write("PATCH", f"/api/v1/products/{pid}", {"stock": self.cycles % 50}, pid)
        self.read(pid)
        if self.cycles % 8 == 0:
            self.read_list()
            if self.created is not None:
                self.write("DELETE", f"/api/v1/products/{self.created}", None, self.created)
                self.read(self.created)
                self.read_list()
            body = {"sku": f"chk-{self.nonce}-{self.cycles}", "name": "Item", "category": CHECKER_CATEGORY}
            self.created = self.write("POST", "/api/v1/products", body | {"price": "5.00"}, None).get("id")
            if self.created is not None:
                self.read(self.created)
        self.cycles += 1

    def summary(self) -> dict[str, Any]:
        """What was judged and what was stale (an answer no state of the category gives), by kind."""
        judge = self.start()
        return {
            "cycles": self.cycles,
            "requests": self.requests,
            "errors": self.errors,
            "reads_checked": sum(judge.judged.values()),
            "stale_reads": sum(judge.mismatched.values()),
            "stale_by_where": dict(judge.mismatched),
            "judged": dict(judge.judged),
            "examples": [str(m) for m in judge.examples()[:5]],
        }
