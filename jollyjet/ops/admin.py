"""The ops endpoints: admin (bearer token: enqueue jobs, task states, the latest audit, drop the cache), GET /metrics
and GET /api/v1/cache/stats (the same registry's since-start figures and the state now); init_ops wires an app."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

import marshmallow as ma
from celery.result import AsyncResult
from flask import Flask, Response, current_app, jsonify, url_for
from flask.views import MethodView
from flask_smorest import Blueprint, abort
from pymongo.errors import PyMongoError

from jollyjet.api import ApiBlueprint, errors, require_token
from jollyjet.cache.epoch import drop_cached_data
from jollyjet.cache.store import CacheError
from jollyjet.extensions import CacheServices, current_services
from jollyjet.jobs.audit import latest_audit
from jollyjet.ops.health import LiveCollector
from jollyjet.ops.jobs import JOB_OF_TASK, QUEUE_ERRORS, JobPublisher, QueueUnavailable, all_statuses, count_job_runs
from jollyjet.ops.metrics import CACHE_KINDS, CACHE_RESULTS, exposition, recorded, register_request_hooks, watch_breaker
from jollyjet.products.repository import translate_db_errors
from jollyjet.settings import CLEANUP_SCAN_BATCH, JOB_PUBLISH_TIMEOUT_S

if TYPE_CHECKING:
    from jollyjet.extensions import Services
    from jollyjet.settings import Settings

blp = ApiBlueprint("admin", __name__, url_prefix="/api/v1", description="Cache administration (bearer token)")
metrics_blp = Blueprint("metrics", __name__, description="Prometheus metrics")
stats_blp = ApiBlueprint("cache_stats", __name__, url_prefix="/api/v1", description="Cache statistics (bearer token)")
ADMIN_SECURITY: list[dict[str, list[str]]] = [{"bearerAuth": []}]
PUBLISHER = "jollyjet_jobs"  # the key of the app's JobPublisher in app.extensions
_PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
# MongoDB commands one database read of each kind costs: a list page is a find plus a count.
QUERIES_PER_READ = {"product": 1, "list": 2, "count": 1, "categories": 1}
READ_COMMANDS = ("find", "count", "aggregate", "getMore", "distinct")


def init_ops(app: Flask, settings: Settings, services: Services) -> None:
    """Request hooks, breaker listeners, scrape-time figures, job signals and the job publisher of this app."""
    register_request_hooks(app)
    if services.cache is not None:
        watch_breaker(services.cache.breaker)
    app.extensions[LiveCollector.EXTENSION] = LiveCollector(settings, services)
    app.extensions[PUBLISHER] = JobPublisher(app.extensions["celery"], JOB_PUBLISH_TIMEOUT_S)
    count_job_runs()


class TaskSchema(ma.Schema):
    id = ma.fields.String(required=True, metadata={"description": "Celery task id (UUID)", "format": "uuid"})
    job = ma.fields.String()
    state = ma.fields.String(
        required=True, metadata={"description": "PENDING (or unknown id), STARTED, RETRY, SUCCESS, FAILURE"}
    )
    result = ma.fields.Dict(metadata={"description": "The job's report, once SUCCESS"})
    error = ma.fields.String(metadata={"description": "Exception type and message, once FAILURE"})


class AuditRunSchema(ma.Schema):
    """One consistency audit, as AuditRun.as_dict() writes it."""

    id = ma.fields.String(required=True)
    started_at = ma.fields.String(required=True, metadata={"format": "date-time"})
    finished_at = ma.fields.String(required=True, metadata={"format": "date-time"})
    duration_s = ma.fields.Float(required=True)
    mode = ma.fields.String(required=True)
    keys_scanned = ma.fields.Integer(required=True)
    keys_checked = ma.fields.Integer(required=True)
    tombstones = ma.fields.Integer(required=True)
    drift = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Integer(), required=True)
    drift_total = ma.fields.Integer(required=True)
    repaired = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Integer(), required=True)
    repair_enabled = ma.fields.Boolean(required=True)


class DroppedSchema(ma.Schema):
    deleted = ma.fields.Integer(required=True, metadata={"description": "Cache keys dropped"})


_CACHE_OFF = {409: "The cache is disabled (JOLLYJET_CACHE_ENABLED=false)"}
_TASK_LINK = {"GetTask": {"operationId": "getTask", "parameters": {"task_id": "$response.body#/id"}}}


def _fail(status: int, message: str, retry_after: int | None = None) -> NoReturn:
    headers = {"Retry-After": str(retry_after)} if retry_after else None
    abort(status, message=message, headers=headers)
    raise AssertionError("abort() always raises")  # for type checkers: abort is not typed NoReturn


def _cache() -> CacheServices:
    cache = current_services().cache
    if cache is None:
        _fail(409, "the cache is disabled (JOLLYJET_CACHE_ENABLED=false)")
    return cache


def _queue_down(error: Exception) -> NoReturn:
    current_app.logger.error(
        "job queue unavailable: %s", error if isinstance(error, QueueUnavailable) else type(error).__name__
    )
    _fail(503, "the job queue is unavailable; retry shortly", retry_after=5)


@blp.route("/cache/<any(warm,audit,cleanup,repair):job>")
class EnqueueJob(MethodView):
    @require_token
    @blp.response(202, TaskSchema, headers={"Location": {"schema": {"type": "string"}, "required": True}})
    @errors(blp, 401, 409, 503, why={**_CACHE_OFF, 503: "The broker is unreachable"})
    @blp.doc(security=ADMIN_SECURITY, operationId="enqueueJob", responses={202: {"links": _TASK_LINK}})
    def post(self, job: str) -> Response:
        """Enqueue a cache job (warm, audit, cleanup, repair); poll the returned task."""
        _cache()
        publisher: JobPublisher = current_app.extensions[PUBLISHER]
        try:
            task_id = publisher.publish(job)
        except QueueUnavailable as error:
            _queue_down(error)
        response = jsonify({"id": task_id, "job": job, "state": "PENDING"})
        response.status_code = 202
        response.headers["Location"] = url_for("admin.TaskState", task_id=task_id)
        return response


@blp.route("/tasks/<uuid:task_id>")
class TaskState(MethodView):
    @require_token
    @blp.response(200, TaskSchema)
    @errors(blp, 401, 404, 503, why={404: "The id is not a UUID", 503: "The result backend is unreachable"})
    @blp.doc(security=ADMIN_SECURITY, operationId="getTask")
    def get(self, task_id: Any) -> dict[str, Any]:
        """State and result of an enqueued job (an unknown id reads as PENDING, as Celery cannot tell)."""
        result = AsyncResult(str(task_id), app=current_app.extensions["celery"])
        try:
            state, value, job = result.state, result.result, result.name
        except QUEUE_ERRORS as error:
            _queue_down(error)
        body: dict[str, Any] = {"id": str(task_id), "state": state}
        if job:
            body["job"] = JOB_OF_TASK.get(job, job)
        if state == "SUCCESS" and isinstance(value, dict):
            body["result"] = value
        elif state in ("FAILURE", "RETRY") and isinstance(value, BaseException):
            # Type and message only: a traceback is for the worker's log, not the API.
            body["error"] = f"{type(value).__name__}: {value}"
        return body


@blp.route("/cache/audit/latest")
class LatestAudit(MethodView):
    @require_token
    @blp.response(200, AuditRunSchema)
    @errors(blp, 401, 404, 503, why={404: "No audit has run yet"})
    @blp.doc(security=ADMIN_SECURITY, operationId="getLatestAudit")
    def get(self) -> dict[str, Any]:
        """The most recent consistency audit: keys checked, drift per class, repairs, duration."""
        with translate_db_errors():
            run = latest_audit()
        if run is None:
            _fail(404, "no audit has run yet")
        return run.as_dict()


@blp.route("/cache")
class Cache(MethodView):
    @require_token
    @blp.response(200, DroppedSchema)
    @errors(blp, 401, 409, 503, why={**_CACHE_OFF, 503: "Redis is unreachable; nothing was dropped"})
    @blp.doc(security=ADMIN_SECURITY, operationId="dropCache")
    def delete(self) -> dict[str, int]:
        """Drop this service's cache keys (prefix-scoped SCAN + UNLINK, never FLUSHDB); read counts are kept."""
        cache = _cache()
        try:
            deleted = drop_cached_data(cache.backend, cache.keys, CLEANUP_SCAN_BATCH)
        except CacheError:
            _fail(503, "Redis is unavailable; nothing was dropped", retry_after=5)
        return {"deleted": deleted}


@metrics_blp.route("/metrics")
class Metrics(MethodView):
    @metrics_blp.doc(
        responses={
            "200": {
                "description": "Prometheus text format 0.0.4 (docs/monitoring.md lists every metric)",
                "content": {_PROMETHEUS_TEXT: {"schema": {"type": "string"}}},
            }
        }
    )
    def get(self) -> Response:
        """Every metric of this server's processes (summed over gunicorn workers), for Prometheus."""
        live = current_app.extensions[LiveCollector.EXTENSION]
        return Response(exposition(live), mimetype=None, content_type=_PROMETHEUS_TEXT)


class OutcomeSchema(ma.Schema):
    hit = ma.fields.Integer()
    miss = ma.fields.Integer()
    bypass = ma.fields.Integer()
    reads = ma.fields.Integer()
    hit_ratio = ma.fields.Float(allow_none=True, metadata={"description": "hits / reads; null without reads"})


class RequestsSchema(ma.Schema):
    all = ma.fields.Nested(OutcomeSchema)
    kinds = ma.fields.Dict(
        keys=ma.fields.String(), values=ma.fields.Nested(OutcomeSchema), metadata={"description": "per kind"}
    )


class ErrorsSchema(ma.Schema):
    redis_calls = ma.fields.Integer(metadata={"description": "cache backend calls to Redis that failed"})
    cache_writes = ma.fields.Integer(metadata={"description": "cache writes that failed after the database commit"})
    breaker_opens = ma.fields.Integer(metadata={"description": "times a Redis circuit breaker opened"})


class CacheStatsSchema(ma.Schema):
    requests = ma.fields.Nested(
        RequestsSchema, metadata={"description": "cached reads by outcome since the server started, per kind"}
    )
    db_queries_saved = ma.fields.Dict(
        metadata={"description": "estimated, measured, read_commands_per_database_read, database_reads, db_queries"}
    )
    errors = ma.fields.Nested(ErrorsSchema, metadata={"description": "since the server started"})
    breaker = ma.fields.String(metadata={"description": "closed, open, half_open or disabled (this process)"})
    breaker_open_anywhere = ma.fields.Boolean(
        metadata={"description": "a breaker of any live process of this server is open or half-open"}
    )
    redis = ma.fields.Dict(allow_none=True, metadata={"description": "up, memory, maxmemory, evictions, clients"})
    pending_repairs = ma.fields.Integer(allow_none=True)
    last_audit = ma.fields.Dict(allow_none=True)
    last_warm = ma.fields.Dict(allow_none=True)
    jobs = ma.fields.Dict(metadata={"description": "each job's last run, outcome, success and report"})


@stats_blp.route("/cache/stats")
class CacheStats(MethodView):
    @require_token
    @stats_blp.response(200, CacheStatsSchema)
    @errors(stats_blp, 401)
    @stats_blp.doc(security=ADMIN_SECURITY)
    def get(self) -> dict[str, Any]:
        """Reads by outcome, queries saved and errors since the server started (summed over its workers); state now."""
        services = current_services()
        probe = current_app.extensions[LiveCollector.EXTENSION].probe
        figures = Recorded.now()
        jobs, audit = _jobs()
        try:
            pending_repairs = services.cache.repairs.pending_count() if services.cache is not None else None
        except PyMongoError:
            pending_repairs = None
        return {
            **since_start(figures),
            "breaker": services.cache.breaker.state.value if services.cache is not None else "disabled",
            # The gauge is the max over the server's live processes: any worker's breaker, not only this one's.
            "breaker_open_anywhere": figures.total("jollyjet_cache_breaker_open") > 0,
            "redis": probe.sample().as_dict() if probe is not None else None,
            "pending_repairs": pending_repairs,
            "last_audit": audit or None,
            "last_warm": (jobs.get("warm") or {}).get("last_report") or None,
            "jobs": jobs,
        }


def _jobs() -> tuple[dict[str, Any], dict[str, Any]]:
    """Each job's status and the last audit, from MongoDB (empty while it is down: the figures still answer)."""
    try:
        statuses = all_statuses()
        audit = latest_audit()
    except PyMongoError as error:
        current_app.logger.warning("cache stats: MongoDB unavailable for job status: %s", type(error).__name__)
        return {}, {}
    jobs = {task: status.as_dict() for task, status in sorted(statuses.items())}
    return jobs, (audit.as_dict() if audit is not None else {})


@dataclass
class Recorded:
    """Recorded samples (name, labels, value), summed the way a scrape sums them."""

    samples: list[tuple[str, dict[str, str], float]]

    @classmethod
    def now(cls) -> Recorded:
        """What this server's processes have recorded since it started."""
        return cls([(s.name, s.labels, s.value) for family in recorded().collect() for s in family.samples])

    def total(self, name: str, **labels: str) -> float:
        """The sum of the samples of `name` carrying these label values."""
        return sum(v for n, have, v in self.samples if n == name and all(have.get(k) == x for k, x in labels.items()))

    def by(self, name: str, label: str) -> dict[str, float]:
        """The samples of `name` summed per value of one label."""
        found: defaultdict[str, float] = defaultdict(float)
        for n, have, v in self.samples:
            if n == name and label in have:
                found[have[label]] += v
        return dict(found)


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
