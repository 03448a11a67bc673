"""Metrics: every metric the processes record, the hooks and listeners that record them, and what a scrape reads.

One rule keeps metrics exact across processes: prometheus-client decides when it is first
imported whether values live in memory or in files shared by the processes of one server
(multiprocess mode, PROMETHEUS_MULTIPROC_DIR). So this package imports it only inside
functions, which run when services or an app are built: after the gunicorn config
(`gunicorn.conf.py`) or the Celery entry point (`tasks.app`) has chosen the directory
(prepare_private_dir). tests/unit/test_metrics.py keeps this true.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import shutil
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from celery import signals
from flask import Flask, Response, g, request
from pymongo.monitoring import CommandFailedEvent, CommandListener, CommandStartedEvent, CommandSucceededEvent

from jollyjet.ops.logs import REQUEST_ID, access_line, request_id_from

if TYPE_CHECKING:
    from prometheus_client.metrics import MetricWrapperBase
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import Collector

    from jollyjet.cache.client import CircuitBreaker
    from jollyjet.cache.store import CallObserver
    from jollyjet.settings import Settings

log = logging.getLogger(__name__)
ENV = "PROMETHEUS_MULTIPROC_DIR"
M = TypeVar("M", bound="MetricWrapperBase")

CACHE_KINDS = ("product", "list", "count", "categories")
CACHE_RESULTS = ("hit", "miss", "bypass")
SHED_REASONS = ("bulkhead", "search", "deep_pages", "auth_failures")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def multiprocess_dir() -> Path | None:
    """The directory this process records metrics in, or None (in-memory, one process)."""
    value = os.environ.get(ENV)
    return Path(value) if value else None


def empty_directory(path: Path | None) -> None:
    """Create path if needed and delete the metric files a previous start left in it (they would add old counts)."""
    if path is None:
        return
    path.mkdir(parents=True, exist_ok=True)
    for leftover in path.glob("*.db"):
        leftover.unlink(missing_ok=True)


def prepare_private_dir(prefix: str) -> Path | None:
    """A fresh directory of this process's own (set in the environment, removed at exit).

    None when prometheus_client is already imported: it has chosen in-memory values, and
    a directory set now would make scrapes read empty files instead of those values."""
    if "prometheus_client" in sys.modules:
        log.warning("prometheus_client was imported before the metrics directory was set: one process's metrics")
        return None
    path = Path(tempfile.mkdtemp(prefix=f"jollyjet-metrics-{prefix}-"))
    os.environ[ENV] = str(path)
    owner = os.getpid()

    def remove() -> None:
        # Forked children run atexit handlers too (Celery's pool): only the creator removes it.
        if os.getpid() == owner:
            shutil.rmtree(path, ignore_errors=True)

    atexit.register(remove)
    log.debug("metrics of this process group are recorded in %s", path)
    return path


class Metrics:
    """Every metric the processes record, with its stable name (docs/monitoring.md explains each)."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

        disable_created_metrics()  # `_created` series double the exposition and nothing here reads them
        self.cache_requests = Counter(
            "jollyjet_cache_requests",
            "Cached reads by outcome: hit (including a read that waited for another request's fill), miss, bypass",
            ["kind", "result"],
        )
        self.cache_db_reads = Counter(
            "jollyjet_cache_db_reads", "Reads the cache layer sent to MongoDB (after a miss or a bypass)", ["kind"]
        )
        self.db_queries = Counter(
            "jollyjet_db_queries", "Every MongoDB command this process sent (pymongo command monitoring)", ["operation"]
        )
        self.http_duration = Histogram(
            "jollyjet_http_request_duration_seconds",
            "HTTP request latency by URL rule, status and cache outcome (X-Cache, or none)",
            ["method", "route", "status", "cache"],
            # Mostly milliseconds from Redis, tens of them from MongoDB; the 100 ms alert needs its own boundary.
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        )
        self.redis_duration = Histogram(
            "jollyjet_redis_command_duration_seconds",
            "Latency of each cache backend call to Redis (one call may be a script or a pipeline)",
            ["operation", "result"],
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )
        self.guard_refusals = Counter(
            "jollyjet_cache_guard_refusals",
            "Cache writes refused by the version guard or a revoked lease (a newer value was already there)",
            ["kind", "operation"],
        )
        self.fenced_reads = Counter(
            "jollyjet_cache_fenced_reads",
            "Cached reads served from MongoDB because the recovery fence refused a hit (a failed cache write awaits "
            "its replay, or this process's view of the pending replays is too old to judge by)",
            ["kind"],
        )
        self.write_failures = Counter(
            "jollyjet_cache_write_failures",
            "Cache writes that failed after the database commit and were recorded for repair",
            ["kind"],
        )
        self.breaker_open = Gauge(
            "jollyjet_cache_breaker_open",
            "1 while a process's Redis circuit breaker is open or half-open (max over live processes)",
            multiprocess_mode="livemax",
        )
        self.breaker_opens = Counter("jollyjet_cache_breaker_opens", "Times a Redis circuit breaker opened")
        self.requests_shed = Counter(
            "jollyjet_requests_shed",
            "Requests refused before MongoDB saw them: 503 from the MongoDB bulkhead, 429 from a rate limit, by reason",
            ["reason"],
        )
        self.audit_drift_found = Counter(
            "jollyjet_audit_drift_found", "Cache entries the consistency audit found drifted, by class", ["drift_class"]
        )
        self.audit_drift_repaired = Counter(
            "jollyjet_audit_drift_repaired", "Drifted entries the consistency audit repaired, by class", ["drift_class"]
        )
        self.job_runs = Counter(
            "jollyjet_job_runs", "Job task runs by outcome: success, skipped, retry, failure", ["task", "outcome"]
        )
        self.job_duration = Histogram(
            "jollyjet_job_duration_seconds",
            "Duration of successful job runs (from their reports)",
            ["task"],
            buckets=(0.01, 0.1, 0.5, 1, 5, 15, 60, 300),
        )


@functools.cache
def metrics() -> Metrics:
    """This process's metrics, defined on first use (after the multiprocess directory is chosen)."""
    return Metrics()


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


class PrometheusEvents:
    """The cache events (jollyjet/cache/store.py) → counters. Cheap (a dict lookup and an increment), never raises."""

    # Read outcomes → the result label; a read that waited for another request's fill is a hit.
    _RESULTS = {"hit": "hit", "wait_hit": "hit", "miss": "miss", "bypass": "bypass"}
    _REFUSALS = {"fill_rejected": "fill", "write_refused": "write"}

    def __init__(self) -> None:
        self.m = metrics()
        self._requests = children_of(self.m.cache_requests)
        # Every series exists from the start, at 0: rate() and ratios need no special case
        # for "nothing happened yet", and dashboards show 0 rather than "no data".
        for kind in CACHE_KINDS:
            for result in CACHE_RESULTS:
                self._requests(kind, result)
            self.m.cache_db_reads.labels(kind)
            self.m.fenced_reads.labels(kind)
        for operation in self._REFUSALS.values():
            self.m.guard_refusals.labels("product", operation)
        self.m.write_failures.labels("product")

    def emit(self, event: str, kind: str) -> None:
        """Count one event."""
        result = self._RESULTS.get(event)
        if result is not None:
            self._requests(kind, result).inc()
        elif event == "db_read":
            self.m.cache_db_reads.labels(kind).inc()
        elif event in self._REFUSALS:
            self.m.guard_refusals.labels(kind, self._REFUSALS[event]).inc()
        elif event == "write_failure":
            self.m.write_failures.labels(kind).inc()
        elif event == "fenced":  # also counted as a bypass: this says which bypasses the fence made
            self.m.fenced_reads.labels(kind).inc()


class QueryCounter(CommandListener):
    """jollyjet_db_queries_total{operation}, one per command the MongoDB client sends (find, insert, aggregate, …).

    Registered on the client itself (jollyjet/db.py), so "database load" is what the
    driver sent, not what the code paths we remembered to instrument report."""

    def __init__(self) -> None:
        self.queries = metrics().db_queries

    def started(self, event: CommandStartedEvent) -> None:
        """Count the command as it is sent (a failed command loaded the server too)."""
        self.queries.labels(event.command_name).inc()

    def succeeded(self, event: CommandSucceededEvent) -> None:
        """Nothing to count: the command was counted when sent."""

    def failed(self, event: CommandFailedEvent) -> None:
        """Nothing to count: the command was counted when sent."""


def redis_observer() -> CallObserver:
    """Times every Redis call of the cache backend."""
    duration = children_of(metrics().redis_duration)

    def observe(operation: str, seconds: float, ok: bool) -> None:
        duration(operation, "ok" if ok else "error").observe(seconds)

    return observe


def shed_counter() -> Callable[[str], None]:
    """Counts one refused request by its reason (one of SHED_REASONS)."""
    child = children_of(metrics().requests_shed)
    for reason in SHED_REASONS:
        child(reason).inc(0)  # every reason's series exists from the start: rate() needs a zero
    return lambda reason: child(reason).inc()


def register_request_hooks(app: Flask) -> None:
    """Give every request of this app an id, time it by URL rule, status and cache outcome, and log one access line."""
    duration = children_of(metrics().http_duration)

    def start() -> None:
        # The proxies `g` and `request` resolve the context on every attribute access: once here.
        state = g._get_current_object()
        state.jj_started = time.perf_counter()
        state.jj_request_id = request_id_from(request.headers.get("X-Request-ID"))
        state.jj_request_id_token = REQUEST_ID.set(state.jj_request_id)

    def finish(response: Response) -> Response:
        state = g._get_current_object()
        started = state.pop("jj_started", None)
        if started is None:  # a request that failed before the first hook ran
            return response
        seconds = time.perf_counter() - started
        req = request._get_current_object()  # type: ignore[attr-defined]  # LocalProxy's documented accessor
        # The URL rule, never the raw path: one series per endpoint, not one per product id.
        route = req.url_rule.rule if req.url_rule is not None else "unmatched"
        method = req.method if req.method in _METHODS else "other"
        cache = response.headers.get("X-Cache", "none").lower()
        duration(method, route, str(response.status_code), cache).observe(seconds)
        response.headers["X-Request-ID"] = state.jj_request_id
        access_line(method, route, req.path, response.status_code, cache, seconds)
        return response

    def forget(_: BaseException | None) -> None:
        token = g.pop("jj_request_id_token", None)
        if token is not None:
            REQUEST_ID.reset(token)

    app.before_request(start)
    app.after_request(finish)
    app.teardown_request(forget)


class _RecordedFiles:
    """The multiprocess files summed (MultiProcessCollector), read again when a scrape catches a process creating one.

    A process that records its first value creates its file and then sizes it; a scrape
    between the two reads an empty file and fails (struct.error). A moment later the
    file is whole, so read again rather than fail the scrape."""

    def __init__(self, path: Path) -> None:
        from prometheus_client.multiprocess import MultiProcessCollector

        self.files = MultiProcessCollector(None, path=str(path))

    def collect(self) -> Iterable[Metric]:
        """All processes' values, summed per mode."""
        for attempt in range(5):
            try:
                return list(self.files.collect())
            except struct.error:
                if attempt == 4:
                    raise
                time.sleep(0.01 * (attempt + 1))
        return []


def recorded() -> Collector:
    """What this server's processes recorded since it started: the multiprocess files, else this process's registry.

    GET /metrics and GET /api/v1/cache/stats both read it: under gunicorn, every worker's
    files, whichever worker answers. Rates over windows are Prometheus' business."""
    path = multiprocess_dir()
    if path is None:
        from prometheus_client import REGISTRY

        return REGISTRY
    return _RecordedFiles(path)


def exposition(live: Collector) -> bytes:
    """The Prometheus text of a scrape: families are unique by name, so the two texts simply concatenate."""
    from prometheus_client import generate_latest

    return generate_latest(recorded()) + generate_latest(live)


def serve_metrics(settings: Settings, role: str) -> tuple[str, int] | None:
    """Start the metrics HTTP server of this worker or beat process (in a thread); None when not configured."""
    from prometheus_client import start_http_server

    address = settings.metrics_address(role)
    if address is None:
        return None
    host, port = address
    try:
        start_http_server(port, addr=host, registry=recorded())
    except OSError as error:
        # A busy port must not stop the jobs; the missing target shows in Prometheus (up == 0).
        log.error("%s metrics: cannot listen on %s:%d: %s", role, host, port, error)
        return None
    log.info("%s metrics on http://%s:%d/metrics", role, host, port)
    return address


def connect_celery_exporters(settings: Settings) -> None:
    """Serve metrics when the worker or beat starts; forget a pool process's live gauges when it exits.

    Each on its own port (JOLLYJET_WORKER/BEAT_METRICS_ADDRESS) rather than pushed to the
    web's registry: the worker may run on other hosts, a push needs the web to be up, and
    Prometheus can then tell a dead worker (target down) from an idle one. The pool
    processes record into the worker's own multiprocess directory (made fresh by
    `tasks.app` for each start); the worker's main process serves their sum."""

    def pool_process_exit(**_: Any) -> None:
        if multiprocess_dir() is not None:
            from prometheus_client.multiprocess import mark_process_dead

            mark_process_dead(os.getpid())

    signals.worker_init.connect(
        lambda **_: serve_metrics(settings, "worker"), weak=False, dispatch_uid="jollyjet-metrics-worker"
    )
    signals.beat_init.connect(
        lambda **_: serve_metrics(settings, "beat"), weak=False, dispatch_uid="jollyjet-metrics-beat"
    )
    signals.worker_process_shutdown.connect(pool_process_exit, weak=False, dispatch_uid="jollyjet-metrics-child")


def watch_breaker(breaker: CircuitBreaker) -> None:
    """jollyjet_cache_breaker_open and _opens follow this Redis circuit breaker."""
    m = metrics()
    m.breaker_open.set(0)
    m.breaker_opens.inc(0)
    breaker.on_open.extend([lambda: m.breaker_open.set(1), m.breaker_opens.inc])
    breaker.on_recover.append(lambda: m.breaker_open.set(0))
