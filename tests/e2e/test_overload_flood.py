"""The flood of issue 16, bounded, on real processes: the Procfile's web (2 gunicorn workers of 4
threads) on nx-27017 with 1,500 products and a real redis-server.

One client sends unique `?q=` searches from 32 connections for FLOOD_S seconds while another
reads 20 hot, cached products. Asserted with counts: the flood gets nothing but 200, 429
and 503 (every refusal with Retry-After), the hot reads all answer 200 and many of them,
MongoDB sees a bounded number of queries, and the service answers normally right after.
The hot client's latency is measured and printed, not asserted (docs/operations.md,
"Overload", has the figures of a run).
"""

from __future__ import annotations

import http.client
import itertools
import secrets
import statistics
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from bench.workload import SeedPlan, catalog_ids, seed
from tests.support.mongo_server import mongo_for_tests, unique_database_name
from tests.support.monitored_stack import scrape
from tests.support.procfile import procfile_env, procfile_processes
from tests.support.redis_server import RedisServer, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PRODUCTS = 1500
HOT = 20
FLOOD_CONNECTIONS = 32
FLOOD_S = 12.0
TIMEOUT_S = 10.0
STARTUP_S = 30.0
# Distinct client addresses, as the trusted proxy (the test itself) reports them.
FLOOD_ADDRESS, HOT_ADDRESS, AFTER_ADDRESS = "203.0.113.9", "198.51.100.20", "192.0.2.33"
# The defaults the run uses (RATE_LIMIT_SEARCH in jollyjet/http.py): one address gets at most 120 searches a minute.
SEARCHES_PER_MINUTE = 120
# A search costs MongoDB at most two commands (the page, then its total); the rest is slack
# for the processes' own commands (connection handshakes, the readiness checks).
MAX_DB_QUERIES = 2 * SEARCHES_PER_MINUTE + 60
# The issue measured 18 hot answers in 12 s before any protection. How many more depends on
# how much CPU the machine leaves the processes (about 1,800 on a quiet one, 37 with a load
# average of 14 on 2 cores): the floor is low, and the hot client must also get at least
# half the answers of an average flooding connection (it is not starved behind them).
MIN_HOT_READS = 24


@dataclass
class Tally:
    """What one client saw."""

    statuses: Counter[int] = field(default_factory=Counter)
    refusals_without_retry_after: int = 0
    latencies_s: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, status: int, retry_after: str | None, seconds: float) -> None:
        with self.lock:
            self.statuses[status] += 1
            self.latencies_s.append(seconds)
            if status != 200 and retry_after is None:
                self.refusals_without_retry_after += 1


def get(connection: http.client.HTTPConnection, path: str, address: str) -> tuple[int, str | None]:
    """One GET over a kept-alive connection, as a proxy forwarding for `address` would send it."""
    connection.request("GET", path, headers={"X-Forwarded-For": address})
    response = connection.getresponse()
    response.read()
    return response.status, response.getheader("Retry-After")


def run_client(port: int, paths: Iterator[str], address: str, tally: Tally, stop: threading.Event) -> None:
    """Send GETs one after the other until stop is set; a dropped connection is reopened."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)
    try:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                status, retry_after = get(connection, next(paths), address)
            except (OSError, http.client.HTTPException):
                connection.close()  # the server closed a kept-alive connection: counted as what it is
                tally.add(0, None, time.perf_counter() - started)
                continue
            tally.add(status, retry_after, time.perf_counter() - started)
    finally:
        connection.close()


def db_queries(url: str) -> float:
    """Every MongoDB command the web processes have sent (all operations)."""
    samples = scrape(url + "/metrics")
    return sum(v for (name, _), v in samples.items() if name == "jollyjet_db_queries_total")


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


@pytest.fixture
def web(tmp_path: Path) -> Iterator[str]:
    """redis-server, nx-27017 with the catalog, and the Procfile's web line; the base URL."""
    mongo, redis = mongo_for_tests(), RedisServer()
    database = unique_database_name("jj_flood")
    port = free_port()
    try:
        redis.start()
        mongo.start()
        with mongo.client() as client:
            assert seed(client[database], SeedPlan(catalog=PRODUCTS, reserve=0, checker=0)) == PRODUCTS
        env = procfile_env(
            PORT=str(port),
            MONGODB_URI=mongo.uri_for(database),
            REDIS_URL=redis.url,
            JOLLYJET_ENV="testing",
            JOLLYJET_API_TOKENS=f"flood-{secrets.token_hex(12)}",
            JOLLYJET_CACHE_KEY_PREFIX=f"flood{uuid.uuid4().hex[:8]}",
            JOLLYJET_LOG_LEVEL="WARNING",
            JOLLYJET_TRUSTED_PROXIES="1",  # the test stands in for the proxy that names each client
            WEB_CONCURRENCY="2",
        )
        with procfile_processes(["web"], env, tmp_path) as processes:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + STARTUP_S
            while True:
                assert processes["web"].alive(), "gunicorn exited during start-up"
                try:
                    if requests.get(url + "/health/ready", timeout=5).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                assert time.monotonic() < deadline, "the web process never became ready"
                time.sleep(0.2)
            yield url
    finally:
        redis.close()
        mongo.close()


def test_a_flood_of_unique_searches_leaves_cached_reads_served(web: str) -> None:
    port = int(web.rsplit(":", 1)[1])
    hot = [f"/api/v1/products/{pid}" for pid in catalog_ids(HOT)]
    for path in hot:  # cached before the flood, as hot products are
        requests.get(web + path, timeout=TIMEOUT_S).raise_for_status()
    assert all(requests.get(web + p, timeout=TIMEOUT_S).headers["X-Cache"] == "HIT" for p in hot)
    queries_before = db_queries(web)

    counter = itertools.count()
    lock = threading.Lock()

    def unique_searches() -> Iterator[str]:
        while True:
            with lock:
                n = next(counter)
            yield f"/api/v1/products?q=item%20{n}"

    stop = threading.Event()
    flood, reads = Tally(), Tally()
    searches = unique_searches()
    threads = [
        threading.Thread(target=run_client, args=(port, searches, FLOOD_ADDRESS, flood, stop))
        for _ in range(FLOOD_CONNECTIONS)
    ]
    threads.append(threading.Thread(target=run_client, args=(port, itertools.cycle(hot), HOT_ADDRESS, reads, stop)))
    for thread in threads:
        thread.start()
    time.sleep(FLOOD_S)
    stop.set()
    for thread in threads:
        thread.join(timeout=TIMEOUT_S + 5)
    assert not any(thread.is_alive() for thread in threads)
    queries = db_queries(web) - queries_before

    # Right after: a new client's search, a hot read and a cold list are served normally.
    after = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)
    assert get(after, "/api/v1/products?q=item%207", AFTER_ADDRESS)[0] == 200
    assert get(after, hot[0], AFTER_ADDRESS)[0] == 200
    assert get(after, "/api/v1/products?category=garden&sort=name", AFTER_ADDRESS)[0] == 200
    after.close()

    p50, p99 = percentile(reads.latencies_s, 50), percentile(reads.latencies_s, 99)
    print(
        f"\nflood: {dict(flood.statuses)} over {FLOOD_S:.0f} s from {FLOOD_CONNECTIONS} connections; "
        f"hot reads: {dict(reads.statuses)}, p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms; "
        f"MongoDB commands during the flood: {queries:.0f}"
    )
    assert set(flood.statuses) <= {200, 429, 503}, flood.statuses
    assert flood.statuses[429] > 0, "the search limit never engaged"
    assert flood.refusals_without_retry_after == 0
    assert flood.statuses[200] <= SEARCHES_PER_MINUTE
    assert set(reads.statuses) == {200}, reads.statuses
    assert reads.statuses[200] >= MIN_HOT_READS
    assert reads.statuses[200] >= flood.statuses.total() / FLOOD_CONNECTIONS / 2
    assert queries <= MAX_DB_QUERIES
