"""Health: liveness, readiness and draining for load balancers, gunicorn's hooks, and the figures a scrape samples now.

Scrape-time figures (Redis INFO, the repair backlog, job status and schedule) are read by
the process answering the scrape, not recorded by every process, so they are never
double counted across gunicorn workers.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import mongoengine
import redis
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate
from pymongo.errors import PyMongoError

from jollyjet.cache.store import CacheError
from jollyjet.extensions import current_services
from jollyjet.jobs import periodic_job_definitions
from jollyjet.ops.jobs import JOB_OF_TASK, JobStatus, all_statuses
from jollyjet.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from jollyjet.extensions import Services

log = logging.getLogger(__name__)
blp = Blueprint("health", __name__, url_prefix="/health", description="Health checks")
# Process-wide, like the signal that sets it: every app instance of a draining process drains.
_draining = threading.Event()
PROBE_TIMEOUT_S = 0.25
# MongoDB-backed figures are read at most this often per process: a scrape adds at most
# one `count` and one `find` per process per period to jollyjet_db_queries_total.
FIGURES_MAX_AGE_S = 10.0
T = TypeVar("T")


def post_worker_init(worker: Any) -> None:
    """gunicorn hook: wrap the worker's SIGTERM handler to mark the process draining before gunicorn stops accepting.

    From then until exit, /health/ready answers 503 on kept-alive or accepted connections, so a
    load balancer takes the instance out. gunicorn has no hook that runs in a worker when its
    graceful shutdown starts (`worker_int` is for SIGINT/SIGQUIT, `worker_exit` comes too late)."""
    graceful_stop = signal.getsignal(signal.SIGTERM)

    def drain(signum: int, frame: FrameType | None) -> None:
        _draining.set()
        worker.log.info("worker %s draining: /health/ready answers 503 until it exits", worker.pid)
        if callable(graceful_stop):
            graceful_stop(signum, frame)

    signal.signal(signal.SIGTERM, drain)


def pre_request(worker: Any, req: Any) -> None:
    """gunicorn hook: a request whose declared body exceeds MAX_CONTENT_LENGTH closes its connection.

    The app answers it 413 without reading the body, whose rest is still on the connection.
    Flask's own `Connection` header is hop-by-hop and gunicorn drops it: decided here."""
    worker.log.debug("%s %s", req.method, req.path)
    limit = getattr(worker.wsgi, "config", {}).get("MAX_CONTENT_LENGTH")
    length = next((v for name, v in req.headers if name == "CONTENT-LENGTH"), None)
    # Not a number: gunicorn refuses those itself.
    if limit is not None and length is not None and length.isdigit() and int(length) > limit:
        req.must_close = True  # gunicorn then answers "Connection: close" and closes after the response


def exit_on_bad_settings(server: Any) -> None:
    """gunicorn hook (master, before workers boot): exit with the settings' one-line problem, not tracebacks."""
    try:
        load_settings()
    except SettingsError as error:
        server.log.error("%s", error)
        sys.exit(1)


class LiveSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["ok"]))


class ReadySchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["ok", "degraded", "unavailable", "draining"]))
    mongodb = fields.String(required=True, validate=validate.OneOf(["ok", "down"]))
    redis = fields.String(required=True, validate=validate.OneOf(["ok", "down", "disabled"]))
    breaker = fields.String(required=True, metadata={"description": "closed, open, half_open or disabled"})


@blp.route("/live")
class Live(MethodView):
    @blp.response(200, LiveSchema)
    @blp.doc(operationId="live")
    def get(self) -> dict[str, str]:
        """The process is up (no dependencies checked)."""
        return {"status": "ok"}


@blp.route("/ready")
class Ready(MethodView):
    @blp.response(200, ReadySchema)
    @blp.alt_response(503, schema=ReadySchema, description="MongoDB is unreachable, or the process is draining")
    @blp.doc(operationId="ready")
    def get(self) -> tuple[dict[str, Any], int]:
        """Ready to serve: MongoDB answers and the process is not shutting down. A Redis outage only degrades."""
        try:
            mongoengine.get_db().command("ping")
        except PyMongoError:
            mongo = False
        else:
            mongo = True
        cache, redis_state = current_services().cache, "disabled"
        if cache is not None:
            try:
                redis_state = "ok" if cache.backend.ping() else "down"
            except CacheError:
                redis_state = "down"
        status = "ok" if mongo and redis_state in ("ok", "disabled") else ("degraded" if mongo else "unavailable")
        draining = _draining.is_set()
        body = {
            "status": "draining" if draining else status,
            "mongodb": "ok" if mongo else "down",
            "redis": redis_state,
            "breaker": cache.breaker.state.value if cache else "disabled",
        }
        return body, 200 if mongo and not draining else 503


@dataclass(frozen=True)
class RedisFigures:
    """What INFO said (up=False: Redis did not answer in time)."""

    up: bool
    used_memory: int = 0
    maxmemory: int = 0
    evicted_keys: int = 0
    connected_clients: int = 0

    @property
    def memory_ratio(self) -> float | None:
        """used_memory / maxmemory, or None without a memory limit."""
        return self.used_memory / self.maxmemory if self.maxmemory else None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view."""
        return {
            "up": self.up,
            "used_memory_bytes": self.used_memory,
            "maxmemory_bytes": self.maxmemory,
            "memory_ratio": None if self.memory_ratio is None else round(self.memory_ratio, 4),
            "evicted_keys": self.evicted_keys,
            "connected_clients": self.connected_clients,
        }


class RedisProbe:
    """INFO memory, stats and clients in one round trip, on a client of its own.

    Not the request path's pool: no retries, a 250 ms budget, no effect on the breaker; a
    dead Redis makes a scrape report `jollyjet_redis_up 0` instead of holding the scrape."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    @classmethod
    def for_url(cls, url: str) -> RedisProbe:
        """A probe with its own small, fast-failing connection pool."""
        timeout = {"socket_timeout": PROBE_TIMEOUT_S, "socket_connect_timeout": PROBE_TIMEOUT_S}
        return cls(redis.Redis.from_url(url, **timeout, retry_on_timeout=False, retry=None, max_connections=4))

    def sample(self) -> RedisFigures:
        """Current figures, or RedisFigures(up=False) when Redis does not answer in time."""
        try:
            info: dict[str, Any] = self.client.info()
        except (redis.RedisError, OSError) as error:
            log.debug("redis probe failed: %s", type(error).__name__)
            return RedisFigures(up=False)
        names = ("used_memory", "maxmemory", "evicted_keys", "connected_clients")  # INFO's, in the fields' order
        return RedisFigures(True, *(int(info.get(name, 0)) for name in names))


class Throttled(Generic[T]):
    """The last value of read(), refreshed at most every FIGURES_MAX_AGE_S; None while the source fails."""

    def __init__(self, read: Callable[[], T]) -> None:
        self.read = read
        self._lock = threading.Lock()
        self._value: T | None = None
        self._at = float("-inf")

    def get(self) -> T | None:
        """The cached value, re-read when older than FIGURES_MAX_AGE_S."""
        with self._lock:
            if time.monotonic() - self._at >= FIGURES_MAX_AGE_S:
                try:
                    self._value = self.read()
                except PyMongoError as error:
                    log.warning("monitoring: could not read %s: %s", self.read.__name__, type(error).__name__)
                    self._value = None
                self._at = time.monotonic()
            return self._value


class LiveCollector:
    """The scrape-time figures of one app (a prometheus_client collector): app.extensions[EXTENSION]."""

    EXTENSION = "jollyjet_live_figures"

    def __init__(self, settings: Settings, services: Services) -> None:
        cache = services.cache
        # INFO only of a real standalone Redis: fakeredis has none, Sentinel or Cluster INFO is per node.
        url = settings.redis_url if settings.redis_topology.value == "standalone" else None
        self.probe = RedisProbe.for_url(url) if cache is not None and url is not None else None
        # Without the cache nothing is ever recorded for repair: no backlog to report.
        self.backlog = Throttled(cache.repairs.pending_count) if cache is not None else None
        self.jobs: Throttled[dict[str, JobStatus]] = Throttled(all_statuses)
        self.intervals = {
            JOB_OF_TASK[job["task"]]: job["schedule"].total_seconds()
            for job in periodic_job_definitions(settings).values()
        }

    def collect(self) -> Iterator[Metric]:
        """Every live family (a family whose source is unreachable is left out, except redis_up)."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        figures = self.probe.sample() if self.probe is not None else None
        if figures is not None:
            yield GaugeMetricFamily(
                "jollyjet_redis_up", "1 when Redis answered INFO within 250 ms", value=int(figures.up)
            )
        if figures is not None and figures.up:
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
        backlog = self.backlog.get() if self.backlog is not None else None
        if backlog is not None:
            yield GaugeMetricFamily(
                "jollyjet_cache_repair_backlog", "Failed cache writes waiting for the repair job", value=backlog
            )
        intervals = GaugeMetricFamily(
            "jollyjet_job_schedule_interval_seconds", "How often beat schedules each job", labels=["task"]
        )
        for task, seconds in self.intervals.items():
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
