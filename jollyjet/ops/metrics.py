"""Metrics: every metric the processes record, the hooks that record them (one request's too), what a scrape reads.

prometheus-client decides when first imported whether values live in memory or in files
shared by a server's processes (PROMETHEUS_MULTIPROC_DIR). So it is imported only inside
functions, after gunicorn.conf.py or `tasks` has chosen the directory (prepare_private_dir);
tests/unit/test_metrics.py keeps this true.
"""

from __future__ import annotations

import atexit
import contextvars
import functools
import logging
import os
import random
import re
import shutil
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from celery import signals
from flask import Flask, Response, g, request
from pymongo.monitoring import CommandFailedEvent, CommandListener, CommandStartedEvent, CommandSucceededEvent

if TYPE_CHECKING:
    from prometheus_client.metrics import MetricWrapperBase
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import Collector

    from jollyjet.cache.fence import CircuitBreaker
    from jollyjet.cache.store import CallObserver
    from jollyjet.settings import Settings

log = logging.getLogger(__name__)
ACCESS_LOGGER = "jollyjet.access"  # one line per request (ops/logs.py writes them in batches)
access_log = logging.getLogger(ACCESS_LOGGER)
_ACCESS_RECORD = vars(logging.LogRecord(access_log.name, logging.INFO, __file__, 0, "%s %s %s", None, None))
_LOGGING_STARTED: float = getattr(logging, "_startTime", time.time())  # what relativeCreated counts from
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("jollyjet_request_id", default=None)
ENV = "PROMETHEUS_MULTIPROC_DIR"
M = TypeVar("M", bound="MetricWrapperBase")
CACHE_KINDS = ("product", "list", "count", "categories")
CACHE_RESULTS = ("hit", "miss", "bypass")
SHED_REASONS = ("bulkhead", "search", "deep_pages", "auth_failures")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Taken from clients and proxies as is; anything else (too long, spaces, control or quote
# characters that could forge log lines) is replaced by a fresh id.
_WELL_FORMED_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{7,127}$")


def multiprocess_dir() -> Path | None:
    """The directory this process records metrics in, or None (in-memory, one process)."""
    value = os.environ.get(ENV)
    return Path(value) if value else None


def empty_directory(path: Path | None) -> None:
    """Create path if needed and delete the metric files a previous start left in it (they would add old counts)."""
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        for leftover in path.glob("*.db"):
            leftover.unlink(missing_ok=True)


def prepare_private_dir(prefix: str) -> Path | None:
    """A fresh metrics directory of this process's own (set in the environment, removed at exit), or None."""
    if "prometheus_client" in sys.modules:
        # It has chosen in-memory values: a directory set now would make scrapes read empty files.
        log.warning("prometheus_client was imported before the metrics directory was set: one process's metrics")
        return None
    path = Path(tempfile.mkdtemp(prefix=f"jollyjet-metrics-{prefix}-"))
    os.environ[ENV] = str(path)
    owner = os.getpid()

    def remove() -> None:
        if os.getpid() == owner:  # forked children (Celery's pool) run atexit handlers too
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
        self.http_children = children_of(self.http_duration)
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
    """metric.labels(...) remembered per label values (from small fixed sets: routes, statuses, kinds)."""
    # The request path asks for the same few children thousands of times a second; labels() validates and locks.
    children: dict[tuple[str, ...], M] = {}

    def child(*values: str) -> M:
        found = children.get(values)
        if found is None:  # a race only looks the child up twice: labels() returns the same one
            found = children[values] = metric.labels(*values)
        return found

    return child


def request_id_from(header: str | None) -> str:
    """The client's X-Request-ID when well-formed, else a new one (32 hex digits)."""
    if header and _WELL_FORMED_ID.match(header):
        return header
    # 128 random bits, as uuid4 has: an id must be unique, not secret, and os.urandom is a system call per
    # request. random reseeds in a forked child (gunicorn's workers), so no two processes share a sequence.
    return f"{random.getrandbits(128):032x}"


def observe_request(method: str, route: str, path: str, status: int, cache: str, seconds: float) -> None:
    """Record one answered request: its latency in the histogram and its one access line (jollyjet.access, INFO)."""
    metrics().http_children(method, route, str(status), cache).observe(seconds)
    if access_log.isEnabledFor(logging.INFO):
        # A copy of one record made at import, with what differs per request: LogRecord() would look up the
        # caller's module and the process's name again, and log.info() walk the stack (docs/performance.md).
        record = logging.LogRecord.__new__(logging.LogRecord)
        now = time.time()
        record.__dict__.update(
            _ACCESS_RECORD,
            args=(method, route, status),
            created=now,
            msecs=(now - int(now)) * 1000 // 1,
            relativeCreated=(now - _LOGGING_STARTED) * 1000,
            thread=threading.get_ident(),
            threadName=threading.current_thread().name,
            process=os.getpid(),
            method=method, route=route, path=path, status=status, cache=cache, duration_ms=round(seconds * 1000, 3),
        )  # fmt: skip
        access_log.handle(record)


class PrometheusEvents:
    """The cache events (jollyjet/cache/store.py) → counters. Cheap (a dict lookup and an increment), never raises."""

    # A read that waited for another request's fill is a hit.
    _RESULTS = {"hit": "hit", "wait_hit": "hit", "miss": "miss", "bypass": "bypass"}
    _REFUSALS = {"fill_rejected": "fill", "write_refused": "write"}

    def __init__(self) -> None:
        self.m = metrics()
        self._requests = children_of(self.m.cache_requests)
        # Every series exists from the start, at 0: rate() and ratios need no "nothing yet" case.
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
    """jollyjet_db_queries_total{operation}: every command the MongoDB client sends, counted as sent.

    On the client itself (jollyjet/db.py): database load is what the driver sent, failed commands included."""

    def __init__(self) -> None:
        self.queries = metrics().db_queries

    def started(self, event: CommandStartedEvent) -> None:
        """Count the command."""
        self.queries.labels(event.command_name).inc()

    def succeeded(self, event: CommandSucceededEvent) -> None:
        """Counted when sent."""

    def failed(self, event: CommandFailedEvent) -> None:
        """Counted when sent."""


def redis_observer() -> CallObserver:
    """Times every Redis call of the cache backend."""
    duration = children_of(metrics().redis_duration)
    return lambda operation, seconds, ok: duration(operation, "ok" if ok else "error").observe(seconds)


def shed_counter() -> Callable[[str], None]:
    """Counts one refused request by its reason (one of SHED_REASONS)."""
    child = children_of(metrics().requests_shed)
    for reason in SHED_REASONS:
        child(reason).inc(0)  # every reason's series exists from the start: rate() needs a zero
    return lambda reason: child(reason).inc()


def register_request_hooks(app: Flask) -> None:
    """Give every request of this app an id, and observe it by URL rule, status and cache outcome."""

    def start() -> None:
        state = g._get_current_object()  # the proxies resolve the context on every access: once here
        state.jj_started = time.perf_counter()
        state.jj_request_id = request_id_from(request.headers.get("X-Request-ID"))
        state.jj_request_id_token = REQUEST_ID.set(state.jj_request_id)

    def finish(response: Response) -> Response:
        state = g._get_current_object()
        started = state.pop("jj_started", None)
        if started is None:  # a request that failed before the first hook ran
            return response
        req = request._get_current_object()  # type: ignore[attr-defined]  # LocalProxy's documented accessor
        # The URL rule, never the raw path: one series per endpoint, not one per product id.
        route = req.url_rule.rule if req.url_rule is not None else "unmatched"
        method = req.method if req.method in _METHODS else "other"
        response.headers["X-Request-ID"] = state.jj_request_id
        cache = response.headers.get("X-Cache", "none").lower()
        observe_request(method, route, req.path, response.status_code, cache, time.perf_counter() - started)
        return response

    def forget(_: BaseException | None) -> None:
        token = g.pop("jj_request_id_token", None)
        if token is not None:
            REQUEST_ID.reset(token)

    app.before_request(start)
    app.after_request(finish)
    app.teardown_request(forget)


class _RecordedFiles:
    """The multiprocess files summed, read again when a scrape catches a process between creating and sizing one."""

    def __init__(self, path: Path) -> None:
        from prometheus_client.multiprocess import MultiProcessCollector

        self.files = MultiProcessCollector(None, path=str(path))

    def collect(self) -> Iterable[Metric]:
        """All processes' values, summed per mode."""
        for attempt in range(5):
            try:
                return list(self.files.collect())
            except struct.error:  # an empty file: whole a moment later
                if attempt == 4:
                    raise
                time.sleep(0.01 * (attempt + 1))
        return []


def recorded() -> Collector:
    """What this server's processes recorded since it started (every gunicorn worker's files), for any worker."""
    path = multiprocess_dir()
    if path is None:
        from prometheus_client import REGISTRY

        return REGISTRY
    return _RecordedFiles(path)


def exposition(live: Collector) -> bytes:
    """The Prometheus text of a scrape: families are unique by name, so the two texts simply concatenate."""
    from prometheus_client import generate_latest

    return generate_latest(recorded()) + generate_latest(live)


def connect_celery_exporters(settings: Settings) -> None:
    """Serve metrics when the worker or beat starts; forget a pool process's live gauges when it exits.

    Each on its own port rather than pushed to the web: workers may run elsewhere, and
    Prometheus can tell a dead worker (target down) from an idle one. Pool processes record
    into the worker's own multiprocess directory; its main process serves their sum."""

    def serve(role: str) -> None:
        from prometheus_client import start_http_server

        if (address := settings.metrics_address(role)) is None:
            return
        host, port = address
        try:
            start_http_server(port, addr=host, registry=recorded())
        except OSError as error:  # a busy port must not stop the jobs; Prometheus shows the target down
            log.error("%s metrics: cannot listen on %s:%d: %s", role, host, port, error)
        else:
            log.info("%s metrics on http://%s:%d/metrics", role, host, port)

    def pool_process_exit(**_: Any) -> None:
        if multiprocess_dir() is not None:
            from prometheus_client.multiprocess import mark_process_dead

            mark_process_dead(os.getpid())

    signals.worker_init.connect(lambda **_: serve("worker"), weak=False, dispatch_uid="jollyjet-metrics-worker")
    signals.beat_init.connect(lambda **_: serve("beat"), weak=False, dispatch_uid="jollyjet-metrics-beat")
    signals.worker_process_shutdown.connect(pool_process_exit, weak=False, dispatch_uid="jollyjet-metrics-child")


def watch_breaker(breaker: CircuitBreaker) -> None:
    """jollyjet_cache_breaker_open and _opens follow this Redis circuit breaker."""
    m = metrics()
    m.breaker_open.set(0)
    m.breaker_opens.inc(0)
    breaker.on_open.extend([lambda: m.breaker_open.set(1), m.breaker_opens.inc])
    breaker.on_recover.append(lambda: m.breaker_open.set(0))
