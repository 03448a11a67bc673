"""Figures sampled when Prometheus scrapes: Redis INFO, the repair backlog, job status and schedule.

They are read by the process answering the scrape, not recorded by every process,
so they are never double counted across gunicorn workers. MongoDB-backed figures
are read at most every CACHE_S seconds per process, so scraping adds at most one
`count` and one `find` command per process per CACHE_S to jollyjet_db_queries_total.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pymongo.errors import PyMongoError

from jollyjet.cache.fence import RepairLog
from jollyjet.monitoring.job_status import JobStatus, all_statuses
from jollyjet.monitoring.redis_probe import RedisProbe
from jollyjet.settings import Settings

log = logging.getLogger(__name__)
CACHE_S = 10.0
T = TypeVar("T")


class Throttled(Generic[T]):
    """The last value of read(), refreshed at most every max_age_s; None while the source fails."""

    def __init__(self, read: Callable[[], T], max_age_s: float = CACHE_S) -> None:
        self.read = read
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._value: T | None = None
        self._at = float("-inf")

    def get(self) -> T | None:
        """The cached value, re-read when older than max_age_s."""
        with self._lock:
            if time.monotonic() - self._at >= self.max_age_s:
                try:
                    self._value = self.read()
                except PyMongoError as error:
                    log.warning("monitoring: could not read %s: %s", self.read.__name__, type(error).__name__)
                    self._value = None
                self._at = time.monotonic()
            return self._value


def scheduled_intervals(settings: Settings) -> dict[str, int]:
    """Each scheduled job's interval in seconds (what tasks/schedule.py gives beat)."""
    if not settings.cache_enabled:
        return {}
    jobs = {
        "warm": (settings.warm_enabled, settings.warm_interval_s),
        "cleanup": (settings.cleanup_enabled, settings.cleanup_interval_s),
        "audit": (settings.audit_enabled, settings.audit_interval_s),
        "repair": (settings.repair_enabled, settings.repair_interval_s),
    }
    return {task: interval for task, (enabled, interval) in jobs.items() if enabled}


class LiveCollector(Collector):
    """Collects the scrape-time figures of one app."""

    def __init__(self, settings: Settings, probe: RedisProbe | None, repairs: RepairLog | None) -> None:
        self.settings = settings
        self.probe = probe
        # Without the cache nothing is ever recorded for repair: no backlog to report.
        self.backlog = Throttled(repairs.pending_count) if repairs is not None else None
        self.jobs: Throttled[dict[str, JobStatus]] = Throttled(all_statuses)

    def collect(self) -> Iterator[Metric]:
        """Every live family (a family whose source is unreachable is left out, except redis_up)."""
        yield from self._redis()
        backlog = self.backlog.get() if self.backlog is not None else None
        if backlog is not None:
            yield GaugeMetricFamily(
                "jollyjet_cache_repair_backlog", "Failed cache writes waiting for the repair job", value=backlog
            )
        intervals = GaugeMetricFamily(
            "jollyjet_job_schedule_interval_seconds", "How often beat schedules each job", labels=["task"]
        )
        for task, seconds in scheduled_intervals(self.settings).items():
            intervals.add_metric([task], seconds)
        yield intervals
        statuses = self.jobs.get()
        if statuses is not None:
            success = GaugeMetricFamily(
                "jollyjet_job_last_success_timestamp_seconds",
                "Unix time of each job's last successful run (absent: never succeeded)",
                labels=["task"],
            )
            for task, status in sorted(statuses.items()):
                if status.last_success_at is not None:
                    success.add_metric([task], status.last_success_at.timestamp())
            yield success

    def _redis(self) -> Iterator[Metric]:
        if self.probe is None:
            return
        figures = self.probe.sample()
        yield GaugeMetricFamily("jollyjet_redis_up", "1 when Redis answered INFO within 250 ms", value=int(figures.up))
        if not figures.up:
            return
        yield GaugeMetricFamily("jollyjet_redis_memory_used_bytes", "Redis used_memory", value=figures.used_memory)
        yield GaugeMetricFamily(
            "jollyjet_redis_memory_max_bytes", "Redis maxmemory (0: no limit)", value=figures.maxmemory
        )
        yield CounterMetricFamily(
            "jollyjet_redis_evicted_keys", "Keys Redis evicted for maxmemory", value=figures.evicted_keys
        )
        yield GaugeMetricFamily(
            "jollyjet_redis_connected_clients", "Redis connected_clients", value=figures.connected_clients
        )
