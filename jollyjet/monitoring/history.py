"""Totals of the recorded metrics, sampled every few seconds, for counts over the last 1, 5 and 15 minutes.

The totals are those of the whole process group (summed from the multiprocess files
under gunicorn), so whichever worker answers, the windows are the group's. One
sampler thread per process, started by the first request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from jollyjet.monitoring.exposition import recorded_registry

log = logging.getLogger(__name__)
SAMPLE_EVERY_S = 10.0
KEEP_S = 16 * 60


@dataclass(frozen=True)
class Totals:
    """Cumulative counts at one moment."""

    at: float
    requests: dict[tuple[str, str], float] = field(default_factory=dict)  # (kind, result)
    db_reads: dict[str, float] = field(default_factory=dict)  # kind
    db_queries: dict[str, float] = field(default_factory=dict)  # operation
    hit_latency: dict[float, float] = field(default_factory=dict)  # le → cumulative count, cache="hit" requests

    @property
    def reads(self) -> float:
        """Cached reads of every kind and outcome."""
        return sum(self.requests.values())

    @property
    def hits(self) -> float:
        """Cached reads served from the cache."""
        return sum(n for (_, result), n in self.requests.items() if result == "hit")

    def as_json(self, at: float) -> dict[str, Any]:
        """JSON-ready form, stamped with `at` (wall-clock seconds) instead of the monotonic time."""
        return {
            "at": at,
            "requests": {f"{k}:{r}": n for (k, r), n in self.requests.items()},
            "db_reads": dict(self.db_reads),
            "db_queries": dict(self.db_queries),
            "hit_latency": {repr(le): n for le, n in self.hit_latency.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Totals:
        """Inverse of as_json (at is then wall-clock time)."""
        requests = {tuple(key.split(":", 1)): n for key, n in data.get("requests", {}).items()}
        return cls(
            float(data.get("at", 0.0)),
            requests,
            dict(data.get("db_reads", {})),
            dict(data.get("db_queries", {})),
            {float(le): n for le, n in data.get("hit_latency", {}).items()},
        )

    def minus(self, earlier: Totals) -> Totals:
        """Counts between earlier and self."""

        def sub(a: dict, b: dict) -> dict:
            return {k: v - b.get(k, 0.0) for k, v in a.items()}

        return Totals(
            self.at,
            sub(self.requests, earlier.requests),
            sub(self.db_reads, earlier.db_reads),
            sub(self.db_queries, earlier.db_queries),
            sub(self.hit_latency, earlier.hit_latency),
        )


def add_totals(parts: Iterable[Totals], at: float) -> Totals:
    """The sum of several servers' totals."""

    def add(target: dict, source: dict) -> None:
        for key, n in source.items():
            target[key] = target.get(key, 0.0) + n

    total = Totals(at)
    for part in parts:
        add(total.requests, part.requests)
        add(total.db_reads, part.db_reads)
        add(total.db_queries, part.db_queries)
        add(total.hit_latency, part.hit_latency)
    return total


def read_totals() -> Totals:
    """The group's totals now."""
    requests: dict[tuple[str, str], float] = {}
    db_reads: dict[str, float] = {}
    db_queries: dict[str, float] = {}
    latency: dict[float, float] = {}
    for family in recorded_registry().collect():
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "jollyjet_cache_requests_total":
                key = (labels["kind"], labels["result"])
                requests[key] = requests.get(key, 0.0) + sample.value
            elif sample.name == "jollyjet_cache_db_reads_total":
                db_reads[labels["kind"]] = db_reads.get(labels["kind"], 0.0) + sample.value
            elif sample.name == "jollyjet_db_queries_total":
                db_queries[labels["operation"]] = db_queries.get(labels["operation"], 0.0) + sample.value
            elif sample.name == "jollyjet_http_request_duration_seconds_bucket" and labels.get("cache") == "hit":
                le = float(labels["le"])
                latency[le] = latency.get(le, 0.0) + sample.value
    return Totals(time.monotonic(), requests, db_reads, db_queries, latency)


class History:
    """Recent Totals, oldest first; window(s) gives the counts over the last s seconds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._samples: deque[Totals] = deque()
        self._thread: threading.Thread | None = None
        # Told of every sample (the web publishes its totals for the threshold job).
        self.publish: Callable[[Totals], None] | None = None

    def start(self) -> None:
        """Start sampling (idempotent; a forked child starts its own thread)."""
        if self._thread is not None and self._thread.is_alive():
            return  # the per-request fast path, without the lock
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._thread = threading.Thread(target=self._run, name="jollyjet-metrics-history", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            totals = read_totals()
            self.add(totals)
            if self.publish is not None:
                try:
                    self.publish(totals)
                except Exception:  # never let a publishing failure stop the sampling
                    log.warning("could not publish the metric totals", exc_info=True)
            time.sleep(SAMPLE_EVERY_S)

    def add(self, totals: Totals) -> None:
        """Keep a sample (and drop those older than KEEP_S)."""
        with self._lock:
            self._samples.append(totals)
            while self._samples and totals.at - self._samples[0].at > KEEP_S:
                self._samples.popleft()

    def window(self, now: Totals, seconds: float) -> tuple[Totals, float | None]:
        """(counts over the last `seconds`, seconds actually covered): from the newest sample at least
        that old, or the oldest there is while the history is younger than the window; with no
        sample yet, everything since start (covered: None)."""
        with self._lock:
            samples = list(self._samples)
        if not samples:
            return now, None
        base = samples[0]
        for sample in samples:
            if now.at - sample.at >= seconds:
                base = sample
        return now.minus(base), round(now.at - base.at, 1)


HISTORY = History()
