"""What the cache counts: its events (the seam where metrics attach) and read popularity (what warming fills).

Events: the cached repository reports each outcome (hit, miss, bypass, failed cache
write, …) to a CacheEvents sink: EventCounter in process (tests, the benchmark), the
Prometheus sink in jollyjet/monitoring/cache_sink.py.

Popularity: reads are counted in process memory (sampled with `sample_rate`, weighted by
1/sample_rate) and a daemon thread of each process sends them to Redis every
`flush_interval_s` in one pipeline per sorted set, off every request's round-trip budget
(0: at once). Counts lost with a dying process are harmless: popularity is a hint for
warming, never needed to serve.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any, Protocol

import orjson

from jollyjet.cache.keys import CacheKeys
from jollyjet.cache.store import CacheBackend, CacheError

log = logging.getLogger(__name__)


class CacheEvents(Protocol):
    """Receives one event at a time; must be cheap and never raise."""

    def emit(self, event: str, kind: str) -> None:
        """Record one event.

        Outcomes, exactly one per cached read: hit, wait_hit (served by another request's
        fill), miss (served from the database after a miss), bypass (Redis failed or the
        breaker is open). Others: db_read, fill, fill_rejected, write_through,
        write_refused (the version guard kept a newer entry), write_failure, fenced (a read
        sent to the database by the recovery fence), epoch_started (a Redis server's cached
        data deleted before first use).
        kind: product, list, count, categories; server for epoch_started.
        """


class EventCounter:
    """Thread-safe in-process counts of (event, kind) pairs (tests and the benchmark read them)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()

    def emit(self, event: str, kind: str) -> None:
        with self._lock:
            self._counts[(event, kind)] += 1

    def count(self, event: str, kind: str | None = None) -> int:
        """Count of one event, for one kind or summed over kinds."""
        with self._lock:
            return sum(n for (e, k), n in self._counts.items() if e == event and (kind is None or k == kind))

    def snapshot(self) -> dict[str, int]:
        """All counts as {"event:kind": n}."""
        with self._lock:
            return {f"{e}:{k}": n for (e, k), n in sorted(self._counts.items())}

    def reset(self) -> None:
        """Forget all counts."""
        with self._lock:
            self._counts.clear()


class TeeEvents:
    """Hands every event to each sink in turn (e.g. an EventCounter and the Prometheus sink)."""

    def __init__(self, sinks: Sequence[CacheEvents]) -> None:
        self.sinks = tuple(sinks)

    def emit(self, event: str, kind: str) -> None:
        for sink in self.sinks:
            sink.emit(event, kind)


def query_member(normalized_query: dict[str, Any]) -> str:
    """The sorted-set member naming a normalized list query (canonical JSON)."""
    return orjson.dumps(normalized_query, option=orjson.OPT_SORT_KEYS).decode()


class PopularityTracker:
    """Counts reads per process and flushes them with ZINCRBY; failures are ignored."""

    def __init__(
        self,
        cache: CacheBackend,
        keys: CacheKeys,
        sample_rate: float,
        rng: random.Random | None = None,
        flush_interval_s: float = 0.0,
    ) -> None:
        if not 0 < sample_rate <= 1:
            raise ValueError("sample_rate must be in (0, 1]")
        self.cache = cache
        self.keys = keys
        self.sample_rate = sample_rate
        self.flush_interval_s = flush_interval_s
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._products: Counter[str] = Counter()
        self._queries: Counter[str] = Counter()
        self._flusher_pid: int | None = None  # the process whose flush thread runs (threads do not survive fork)

    def _sampled(self) -> bool:
        return self.sample_rate >= 1 or self._rng.random() < self.sample_rate

    def product_read(self, product_id: str) -> None:
        """Count one read of a product (an ObjectId string, already validated)."""
        if self._sampled():
            self._count(self._products, product_id)

    def query_read(self, normalized_query: dict[str, Any]) -> None:
        """Count one read of a list query; pages of one query count together (warming fills page 1)."""
        if self._sampled():
            self._count(self._queries, query_member({**normalized_query, "page": 1}))

    def _count(self, counts: Counter[str], member: str) -> None:
        with self._lock:
            counts[member] += 1
        if self.flush_interval_s <= 0:
            self.flush()
        elif self._flusher_pid != os.getpid():
            self._start_flusher()

    def _start_flusher(self) -> None:
        with self._lock:
            if self._flusher_pid == os.getpid():
                return
            self._flusher_pid = os.getpid()
        threading.Thread(target=self._flush_forever, name="popularity-flush", daemon=True).start()

    def _flush_forever(self) -> None:
        while True:
            time.sleep(self.flush_interval_s)
            try:
                self.flush()
            except Exception:  # the thread must outlive any surprise; the next batch retries nothing
                log.exception("popularity flush failed")

    def flush(self) -> None:
        """Send the counts gathered so far (one pipeline per sorted set); dropped if Redis fails."""
        with self._lock:
            products, self._products = self._products, Counter()
            queries, self._queries = self._queries, Counter()
        weight = 1 / self.sample_rate
        with contextlib.suppress(CacheError):
            if products:
                self.cache.incr_scores(self.keys.popular_products, {m: n * weight for m, n in products.items()})
            if queries:
                self.cache.incr_scores(self.keys.popular_queries, {m: n * weight for m, n in queries.items()})

    def top_products(self, n: int) -> list[str]:
        """The n most-read product ids, most-read first (this process's unsent counts included)."""
        self.flush()
        return self.cache.top_members(self.keys.popular_products, 0, n - 1) if n > 0 else []

    def top_queries(self, n: int) -> list[dict[str, Any]]:
        """The n most-read list queries (page 1), most-read first; unreadable members are skipped."""
        if n <= 0:
            return []
        self.flush()
        queries = []
        for member in self.cache.top_members(self.keys.popular_queries, 0, n - 1):
            try:
                value = orjson.loads(member)
            except orjson.JSONDecodeError:
                log.warning("skipping an unreadable popular-query member")
                continue
            if isinstance(value, dict):
                queries.append(value)
        return queries
