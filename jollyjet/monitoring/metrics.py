"""Every metric the processes record, with its stable name (docs/monitoring.md explains each).

Import only after the multiprocess directory is chosen (see the package docstring).
Figures sampled at scrape time (Redis INFO, the repair backlog, job status) are not
here: they are collectors built per scrape (live.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from prometheus_client import Counter, Gauge, Histogram

M = TypeVar("M", Counter, Gauge, Histogram)

CACHE_KINDS = ("product", "list", "count", "categories")
CACHE_RESULTS = ("hit", "miss", "bypass")
# Requests are mostly served in milliseconds from Redis and tens of milliseconds from
# MongoDB; the 100 ms alert threshold needs a bucket boundary of its own.
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
REDIS_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

CACHE_REQUESTS = Counter(
    "jollyjet_cache_requests",
    "Cached reads by outcome: hit (including a read that waited for another request's fill), miss, bypass",
    ["kind", "result"],
)
CACHE_DB_READS = Counter(
    "jollyjet_cache_db_reads", "Reads the cache layer sent to MongoDB (after a miss or a bypass)", ["kind"]
)
DB_QUERIES = Counter(
    "jollyjet_db_queries", "Every MongoDB command this process sent (pymongo command monitoring)", ["operation"]
)
HTTP_DURATION = Histogram(
    "jollyjet_http_request_duration_seconds",
    "HTTP request latency by URL rule, status and cache outcome (X-Cache, or none)",
    ["method", "route", "status", "cache"],
    buckets=HTTP_BUCKETS,
)
REDIS_DURATION = Histogram(
    "jollyjet_redis_command_duration_seconds",
    "Latency of each cache backend call to Redis (one call may be a script or a pipeline)",
    ["operation", "result"],
    buckets=REDIS_BUCKETS,
)
GUARD_REFUSALS = Counter(
    "jollyjet_cache_guard_refusals",
    "Cache writes refused by the version guard or a revoked lease (a newer value was already there)",
    ["kind", "operation"],
)
FENCED_READS = Counter(
    "jollyjet_cache_fenced_reads",
    "Cached reads served from MongoDB because the recovery fence refused a hit (a failed cache write awaits "
    "its replay, or this process's view of the pending replays is too old to judge by)",
    ["kind"],
)
WRITE_FAILURES = Counter(
    "jollyjet_cache_write_failures",
    "Cache writes that failed after the database commit and were recorded for repair",
    ["kind"],
)
BREAKER_OPEN = Gauge(
    "jollyjet_cache_breaker_open",
    "1 while a process's Redis circuit breaker is open or half-open (max over live processes)",
    multiprocess_mode="livemax",
)
BREAKER_OPENS = Counter("jollyjet_cache_breaker_opens", "Times a Redis circuit breaker opened")
REQUESTS_SHED = Counter(
    "jollyjet_requests_shed",
    "Requests refused before MongoDB saw them: 503 from the MongoDB bulkhead, 429 from a rate limit, by reason",
    ["reason"],
)
AUDIT_DRIFT_FOUND = Counter(
    "jollyjet_audit_drift_found", "Cache entries the consistency audit found drifted, by class", ["drift_class"]
)
AUDIT_DRIFT_REPAIRED = Counter(
    "jollyjet_audit_drift_repaired", "Drifted entries the consistency audit repaired, by class", ["drift_class"]
)
JOB_RUNS = Counter(
    "jollyjet_job_runs", "Job task runs by outcome: success, skipped, retry, failure", ["task", "outcome"]
)
JOB_DURATION = Histogram(
    "jollyjet_job_duration_seconds",
    "Duration of successful job runs (from their reports)",
    ["task"],
    buckets=(0.01, 0.1, 0.5, 1, 5, 15, 60, 300),
)


def children_of(metric: M) -> Callable[..., M]:
    """metric.labels(...) remembered per label values: the request path asks for the same few
    children thousands of times a second, and each labels() call validates, converts and
    locks. The label values passed must come from small fixed sets (routes, statuses, kinds)."""
    children: dict[tuple[str, ...], M] = {}

    def child(*values: str) -> M:
        found = children.get(values)
        if found is None:
            # A race here only looks the child up twice: labels() returns the same one.
            found = children[values] = metric.labels(*values)
        return found

    return child
