"""Concurrent writers and readers against the HTTP API from one client process, judged whole and by a WriteLedger.

Writers update, create and delete products of one category; every write goes into the
whole-answer judge's history (tests/support/judge.py) with the client's clock, and
every completed one into the ledger. Readers read single products, the category's list
and its count. Each answer is judged whole: it must be what one state the writes
produced gives (a product's body, the page's ids in order with their bodies and the
total, the count). The older per-item figures stay: the ledger judges each product and
list item's version, and membership and counts are judged by creates and deletes: a
read must show every product whose create completed before the read began and whose
delete had not started before the read ended, must not show one whose delete completed
before it began, and a count must lie between the bounds those give.

Everything is bounded: the threads stop when told to, each request has a timeout.
"""

from __future__ import annotations

import bisect
import json
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import requests

from tests.support.factories import product_payload
from tests.support.judge import DELETE, CatalogHistory, CatalogJudge, TooManyStates, Write
from tests.support.ledger import WriteLedger

REQUEST_TIMEOUT_S = 10.0
MAX_PRODUCTS = 90  # a list page of 100 holds the whole category


@dataclass
class ReadSample:
    """One completed read request."""

    kind: str  # product, list, count
    began_at: float
    latency_s: float
    status: int


@dataclass
class _Lifecycle:
    create_completed: float | None = None
    delete_started: float | None = None
    delete_completed: float | None = None


@dataclass
class Membership:
    """Creates and deletes with their times: what lists and counts must show."""

    initial: int
    lives: dict[str, _Lifecycle] = field(default_factory=dict)
    create_started: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def must_show(self, began: float, ended: float) -> set[str]:
        """Products a read spanning [began, ended] must include."""
        with self.lock:
            return {
                pid
                for pid, life in self.lives.items()
                if life.create_completed is not None
                and life.create_completed < began
                and (life.delete_started is None or life.delete_started > ended)
            }

    def count_bounds(self, began: float, ended: float) -> tuple[int, int]:
        """Lowest and highest count a read spanning [began, ended] may return."""
        with self.lock:
            created = [life for life in self.lives.values() if life.create_completed is not None]
            # Creates that completed before the read began are in; deletes that started before it ended may be out.
            low = sum(
                1
                for life in created
                if life.create_completed < began and (life.delete_started is None or life.delete_started > ended)
            )
            started = bisect.bisect_right(sorted(self.create_started), ended)
            gone = sum(1 for life in created if life.delete_completed is not None and life.delete_completed < began)
            high = self.initial + started - gone
            return low, high


@dataclass
class TrafficReport:
    """What one run sent and saw."""

    reads: list[ReadSample] = field(default_factory=list)
    writes: int = 0
    write_5xx: int = 0
    membership_violations: list[str] = field(default_factory=list)
    count_violations: list[str] = field(default_factory=list)
    # Whole answers: the judge's mismatches, and answers it refused to judge (too many states).
    judge: CatalogJudge = field(default_factory=lambda: CatalogJudge(CatalogHistory(wait_s=REQUEST_TIMEOUT_S + 5)))
    unjudged: list[str] = field(default_factory=list)

    def read_5xx(self) -> int:
        """Reads answered with a 5xx (or not answered at all, status 0)."""
        return sum(1 for r in self.reads if r.status >= 500 or r.status == 0)

    def p99_read_s(self, since: float = 0.0, until: float = float("inf")) -> float:
        """99th percentile read latency among reads that began in [since, until)."""
        latencies = sorted(r.latency_s for r in self.reads if since <= r.began_at < until)
        if not latencies:
            return 0.0
        return latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]


class Traffic:
    """Writer and reader threads over one category; start(), then stop() returns the report."""

    def __init__(
        self, base_url: str, token: str, category: str, ledger: WriteLedger, writers: int = 2, readers: int = 6
    ) -> None:
        self.base_url = base_url
        self.auth = {"Authorization": f"Bearer {token}"}
        self.category = category
        self.ledger = ledger
        self.report = TrafficReport()
        self.judge = self.report.judge
        self.history = self.judge.history
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._live: list[str] = []
        self._known: list[str] = []
        self._threads = [threading.Thread(target=self._write_loop, daemon=True) for _ in range(writers)]
        self._threads += [threading.Thread(target=self._read_loop, daemon=True) for _ in range(readers)]
        self.membership = Membership(initial=0)

    # --- setup ---------------------------------------------------------------------------
    def seed(self, count: int) -> None:
        """Create the category's first products (before the clock of the run starts)."""
        for _ in range(count):
            self._create()

    def start(self) -> Traffic:
        """Start every thread."""
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> TrafficReport:
        """Stop the threads (bounded by the request timeout) and return the report."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=REQUEST_TIMEOUT_S + 5)
        return self.report

    # --- writes --------------------------------------------------------------------------
    def _create(self) -> None:
        started = time.monotonic()
        with self.membership.lock:
            self.membership.create_started.append(started)
        payload = product_payload(category=self.category)
        token = self.history.begin_write(None, payload, at=started)
        response = self._send("POST", "/api/v1/products", json=payload)
        completed = time.monotonic()
        self._settle(token, response, 201, completed)
        if response is not None and response.status_code == 201:
            product = response.json()
            self.ledger.record_write(product["id"], product["version"], completed)
            with self.membership.lock:
                self.membership.lives[product["id"]] = _Lifecycle(create_completed=completed)
            with self._lock:
                self._live.append(product["id"])
                self._known.append(product["id"])

    def _update(self, product_id: str) -> None:
        change = {"stock": random.randint(0, 10_000)}
        token = self.history.begin_write(product_id, change)
        response = self._send("PATCH", f"/api/v1/products/{product_id}", json=change)
        completed = time.monotonic()
        self._settle(token, response, 200, completed)
        if response is not None and response.status_code == 200:
            self.ledger.record_write(product_id, response.json()["version"], completed)

    def _delete(self, product_id: str) -> None:
        started = time.monotonic()
        with self.membership.lock:
            self.membership.lives[product_id].delete_started = started
        token = self.history.begin_write(product_id, DELETE, at=started)
        response = self._send("DELETE", f"/api/v1/products/{product_id}")
        completed = time.monotonic()
        self._settle(token, response, 204, completed)
        if response is not None and response.status_code == 204:
            self.ledger.record_delete(product_id, completed)
            with self.membership.lock:
                self.membership.lives[product_id].delete_completed = completed

    def _settle(self, token: Write, response: requests.Response | None, success: int, completed: float) -> None:
        """The write's outcome into the judge's history: done, refused (4xx), or unknown (timeout, 5xx)."""
        if response is not None and response.status_code == success:
            self.history.complete_write(token, response.json() if success != 204 else None, at=completed)
        elif response is not None and response.status_code < 500:
            self.history.fail_write(token)
        else:
            self.history.unknown_write(token)

    def _judged(self, verdict: Any, *args: Any) -> None:
        """Run one judgment; an answer the judge cannot enumerate is counted, never passed."""
        try:
            verdict(*args)
        except TooManyStates as error:
            with self._lock:
                self.report.unjudged.append(str(error))

    def _write_loop(self) -> None:
        while not self._stop.is_set():
            roll = random.random()
            with self._lock:
                live = list(self._live)
                victim = random.choice(live) if live and roll < 0.08 and len(live) > 10 else None
                if victim is not None:
                    self._live.remove(victim)
            if victim is not None:
                self._delete(victim)
            elif roll > 0.92 and len(self._known) < MAX_PRODUCTS:
                self._create()
            elif live:
                self._update(random.choice(live))

    # --- reads ---------------------------------------------------------------------------
    def _read_loop(self) -> None:
        while not self._stop.is_set():
            roll = random.random()
            if roll < 0.6:
                self._read_product()
            elif roll < 0.8:
                self._read_list()
            else:
                self._read_count()

    def _timed_get(self, kind: str, path: str) -> tuple[float, float, requests.Response | None]:
        began = time.monotonic()
        response = self._send("GET", path)
        ended = time.monotonic()
        status = 0 if response is None else response.status_code
        with self._lock:
            self.report.reads.append(ReadSample(kind, began, ended - began, status))
        return began, ended, response

    def _read_product(self) -> None:
        with self._lock:
            if not self._known:
                return
            product_id = random.choice(self._known)
        began, ended, response = self._timed_get("product", f"/api/v1/products/{product_id}")
        if response is None or response.status_code not in (200, 404):
            return
        answer = response.json() if response.status_code == 200 else None
        verdict = response.headers.get("X-Cache")
        self._judged(self.judge.product, product_id, began, ended, response.status_code, answer, verdict)
        if response.status_code == 404 and self._delete_began_before(product_id, ended):
            return  # a delete in flight may show already: that is newer news, not older
        version = response.json()["version"] if response.status_code == 200 else None
        self.ledger.check_read(product_id, began, version, f"product X-Cache={response.headers.get('X-Cache')}")

    def _delete_began_before(self, product_id: str, moment: float) -> bool:
        with self.membership.lock:
            started = self.membership.lives[product_id].delete_started
        return started is not None and started < moment

    def _read_list(self) -> None:
        began, ended, response = self._timed_get("list", f"/api/v1/products?category={self.category}&page_size=100")
        if response is None or response.status_code != 200:
            return
        total = json.loads(response.headers["X-Pagination"])["total"]
        query = {"category": self.category, "page_size": 100}
        verdict = response.headers.get("X-Cache")
        self._judged(self.judge.page, query, began, ended, response.json(), total, verdict)
        items = [(p["id"], p["version"]) for p in response.json()]
        # The verdict goes into the record: a stale item then says whether Redis or MongoDB served it.
        self.ledger.check_items(items, began, f"list {self.category} X-Cache={response.headers.get('X-Cache')}")
        missing = self.membership.must_show(began, ended) - {pid for pid, _ in items}
        if missing:
            with self._lock:
                verdict = response.headers.get("X-Cache")
                self.report.membership_violations.append(
                    f"list began {began:.3f} misses {sorted(missing)} (X-Cache={verdict})"
                )

    def _read_count(self) -> None:
        began, ended, response = self._timed_get("count", f"/api/v1/products/count?category={self.category}")
        if response is None or response.status_code != 200:
            return
        count = response.json()["count"]
        verdict = response.headers.get("X-Cache")
        self._judged(self.judge.count, {"category": self.category}, began, ended, count, verdict)
        low, high = self.membership.count_bounds(began, ended)
        if not low <= count <= high:
            with self._lock:
                verdict = response.headers.get("X-Cache")
                self.report.count_violations.append(
                    f"count began {began:.3f}: {count} not in [{low}, {high}] (X-Cache={verdict})"
                )

    def _send(self, method: str, path: str, **kwargs: Any) -> requests.Response | None:
        headers = self.auth if method != "GET" else {}
        try:
            response = requests.request(
                method, self.base_url + path, headers=headers, timeout=REQUEST_TIMEOUT_S, **kwargs
            )
        except requests.RequestException:
            response = None
        if method != "GET":
            with self._lock:
                self.report.writes += 1
                if response is None or response.status_code >= 500:
                    self.report.write_5xx += 1
        return response
