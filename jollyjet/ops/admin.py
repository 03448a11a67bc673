"""Admin endpoints (bearer token): enqueue cache jobs, read task states and the latest audit, drop the cache."""

from __future__ import annotations

import threading
from typing import Any, NoReturn

import marshmallow as ma
from celery.result import AsyncResult
from flask import Response, current_app, jsonify, url_for
from flask.views import MethodView
from flask_smorest import abort

from jollyjet.api import ApiBlueprint, errors, require_token
from jollyjet.cache.backend import CacheError
from jollyjet.extensions import CacheServices, current_services
from jollyjet.maintenance import names
from jollyjet.maintenance.audit_store import latest_audit
from jollyjet.maintenance.flush import drop_service_keys
from jollyjet.ops.job_queue import QUEUE_ERRORS, JobPublisher, QueueUnavailable
from jollyjet.products.mongo_repository import translate_db_errors
from jollyjet.settings import CLEANUP_SCAN_BATCH, JOB_PUBLISH_TIMEOUT_S

blp = ApiBlueprint("admin", __name__, url_prefix="/api/v1", description="Cache administration (bearer token)")
ADMIN_SECURITY: list[dict[str, list[str]]] = [{"bearerAuth": []}]
JOBS = {"warm": names.WARM, "audit": names.AUDIT, "cleanup": names.CLEANUP, "repair": names.REPAIR}
_PUBLISHER_LOCK = threading.Lock()


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


def _publisher() -> JobPublisher:
    """This app's JobPublisher, made on first use."""
    extensions = current_app.extensions
    with _PUBLISHER_LOCK:
        if "jollyjet_jobs" not in extensions:
            timeout_s = JOB_PUBLISH_TIMEOUT_S
            extensions["jollyjet_jobs"] = JobPublisher(extensions["celery"], timeout_s)
    publisher: JobPublisher = extensions["jollyjet_jobs"]
    return publisher


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
        try:
            task_id = _publisher().publish(JOBS[job])
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
            body["job"] = next((short for short, full in JOBS.items() if full == job), job)
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
            deleted = drop_service_keys(cache.backend, cache.keys, CLEANUP_SCAN_BATCH)
        except CacheError:
            _fail(503, "Redis is unavailable; nothing was dropped", retry_after=5)
        return {"deleted": deleted}
