"""What one process group recorded: as Prometheus text (plus live figures), and summed for people.

GET /metrics and GET /api/v1/cache/stats read the same registry (recorded_registry):
under gunicorn, the multiprocess files of every worker, so both report the whole
server's counts since it started whichever worker answers. Rates over windows are
Prometheus' business (deploy/prometheus/alerts.yml), not this module's.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from jollyjet.monitoring.metrics import CACHE_KINDS, CACHE_RESULTS
from jollyjet.monitoring.process_dir import multiprocess_dir

# MongoDB commands one database read of each kind costs (mongo_repository.py): a list
# page is a find plus a count, the others one command each.
QUERIES_PER_READ = {"product": 1, "list": 2, "count": 1, "categories": 1}
READ_COMMANDS = ("find", "count", "aggregate", "getMore", "distinct")


class SafeMultiProcessCollector(MultiProcessCollector):
    """MultiProcessCollector that retries when it catches a process creating its file.

    A process that records its first value creates its file and then sizes it; a scrape
    between the two reads an empty file and fails (struct.error). A moment later the
    file is whole, so read again rather than fail the scrape."""

    def collect(self) -> Iterable[Metric]:
        """All processes' values, summed per mode."""
        for attempt in range(5):
            try:
                return list(super().collect())
            except struct.error:
                if attempt == 4:
                    raise
                time.sleep(0.01 * (attempt + 1))
        return []


def recorded_registry() -> CollectorRegistry:
    """What the processes recorded: summed from the multiprocess files, else this process's registry."""
    path = multiprocess_dir()
    if path is None:
        return REGISTRY
    registry = CollectorRegistry()
    SafeMultiProcessCollector(registry, path=str(path))
    return registry


def live_registry(collector: Collector | None) -> CollectorRegistry:
    """A registry with the scrape-time collector (empty without one)."""
    registry = CollectorRegistry(auto_describe=False)
    if collector is not None:
        registry.register(collector)
    return registry


def render(live: CollectorRegistry) -> bytes:
    """The exposition: families are unique by name, so the two texts simply concatenate."""
    return generate_latest(recorded_registry()) + generate_latest(live)


class Recorded:
    """Recorded samples (name, labels, value), summed the way a scrape sums them."""

    def __init__(self, samples: Iterable[tuple[str, dict[str, str], float]]) -> None:
        self.samples = list(samples)

    @classmethod
    def now(cls) -> Recorded:
        """What this server's processes have recorded since it started."""
        return cls((s.name, s.labels, s.value) for family in recorded_registry().collect() for s in family.samples)

    def total(self, name: str, **labels: str) -> float:
        """The sum of the samples of `name` carrying these label values."""
        return sum(v for n, have, v in self.samples if n == name and all(have.get(k) == x for k, x in labels.items()))

    def by(self, name: str, label: str) -> dict[str, float]:
        """The samples of `name` summed per value of one label."""
        found: dict[str, float] = {}
        for n, have, v in self.samples:
            if n == name and label in have:
                found[have[label]] = found.get(have[label], 0.0) + v
        return found


def since_start(recorded: Recorded) -> dict[str, Any]:
    """The statistics endpoint's counts: cached reads by outcome, MongoDB queries saved, errors."""
    counts = {
        (kind, result): recorded.total("jollyjet_cache_requests_total", kind=kind, result=result)
        for kind in CACHE_KINDS
        for result in CACHE_RESULTS
    }
    overall = {result: sum(counts[kind, result] for kind in CACHE_KINDS) for result in CACHE_RESULTS}
    return {
        "requests": {
            "all": _outcomes(overall),
            "kinds": {kind: _outcomes({r: counts[kind, r] for r in CACHE_RESULTS}) for kind in CACHE_KINDS},
        },
        "db_queries_saved": _queries_saved(recorded, {kind: counts[kind, "hit"] for kind in CACHE_KINDS}),
        "errors": {
            "redis_calls": int(recorded.total("jollyjet_redis_command_duration_seconds_count", result="error")),
            "cache_writes": int(recorded.total("jollyjet_cache_write_failures_total")),
            "breaker_opens": int(recorded.total("jollyjet_cache_breaker_opens_total")),
        },
    }


def _outcomes(counts: dict[str, float]) -> dict[str, Any]:
    reads = sum(counts.values())
    return {**{r: int(n) for r, n in counts.items()}, "reads": int(reads),
            "hit_ratio": round(counts["hit"] / reads, 4) if reads else None}  # fmt: skip


def _queries_saved(recorded: Recorded, hits: dict[str, float]) -> dict[str, Any]:
    """Estimated (hits times a read's query cost) and measured (hits times read commands per database read)."""
    db_reads = sum(recorded.by("jollyjet_cache_db_reads_total", "kind").values())
    db_queries = recorded.by("jollyjet_db_queries_total", "operation")
    read_commands = sum(db_queries.get(c, 0.0) for c in READ_COMMANDS)
    per_read = read_commands / db_reads if db_reads else None
    return {
        "estimated": int(sum(hits[k] * QUERIES_PER_READ[k] for k in CACHE_KINDS)),
        "measured": None if per_read is None else round(sum(hits.values()) * per_read),
        "read_commands_per_database_read": None if per_read is None else round(per_read, 3),
        "database_reads": int(db_reads),
        "db_queries": {op: int(n) for op, n in sorted(db_queries.items())},
    }
