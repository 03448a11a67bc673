"""The jobs as operations sees them: publishing one from a request, counting every run, each job's last status.

Celery's timeouts do not bound a publish: a Redis that accepts connections but does not
answer holds `send_task` about 20 s. So a short-lived thread publishes and the request
waits at most JOLLYJET_JOB_PUBLISH_TIMEOUT_S; a late publish costs one skipped run (every
job is idempotent and locked). At most MAX_IN_FLIGHT publishes wait: then 503 at once.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from celery import Celery, signals
from kombu.exceptions import KombuError
from mongoengine import DateTimeField, DictField, Document, StringField
from pymongo.errors import PyMongoError
from redis.exceptions import RedisError

from jollyjet import jobs
from jollyjet.db import set_to_server_time
from jollyjet.jobs.audit import DRIFT_CLASSES
from jollyjet.ops.metrics import metrics
from jollyjet.products.record import api_timestamp

log = logging.getLogger(__name__)
# Short job name (labels, the admin API, the docs) → Celery task name.
JOBS = {"warm": jobs.WARM, "cleanup": jobs.CLEANUP, "audit": jobs.AUDIT, "repair": jobs.REPAIR}
JOB_OF_TASK = {task: job for job, task in JOBS.items()}
# Broker or result-backend failures: the job system is unreachable, not the request wrong.
QUEUE_ERRORS = (KombuError, RedisError, OSError)
MAX_IN_FLIGHT = 2


class QueueUnavailable(Exception):
    """The broker (or the result backend) did not take the job in time."""


class JobPublisher:
    """Sends jobs' tasks by name; raises QueueUnavailable instead of waiting on a dead broker."""

    def __init__(self, celery: Celery, timeout_s: float) -> None:
        self._celery = celery
        self._timeout_s = timeout_s
        self._slots = threading.BoundedSemaphore(MAX_IN_FLIGHT)
        self._lock = threading.Lock()
        self.in_flight = 0

    def publish(self, job: str) -> str:
        """Enqueue the job's task (JOBS); its id, or QueueUnavailable within the timeout."""
        if not self._slots.acquire(blocking=False):
            raise QueueUnavailable("earlier jobs are still waiting for the broker")
        outcome: queue.Queue[tuple[str | None, BaseException | None]] = queue.Queue(maxsize=1)
        self._count(+1)
        threading.Thread(target=self._send, args=(JOBS[job], outcome), name="job-publish", daemon=True).start()
        try:
            task_id, error = outcome.get(timeout=self._timeout_s)
        except queue.Empty:
            raise QueueUnavailable(f"the broker did not take the job within {self._timeout_s:g} s") from None
        if error is not None:
            cause: BaseException | None = error
            while cause is not None and not isinstance(cause, QUEUE_ERRORS):
                cause = cause.__cause__ or cause.__context__
            if cause is not None:  # a queue error anywhere in the chain
                raise QueueUnavailable(f"the broker is unreachable ({type(error).__name__})") from error
            raise error
        assert task_id is not None
        return task_id

    def _send(self, task_name: str, outcome: queue.Queue[tuple[str | None, BaseException | None]]) -> None:
        try:
            outcome.put((self._celery.send_task(task_name).id, None))
        except Exception as error:
            outcome.put((None, error))
        finally:
            self._count(-1)
            self._slots.release()

    def _count(self, step: int) -> None:
        with self._lock:
            self.in_flight += step


class JobStatus(Document):
    """One job's latest run and success, in MongoDB: any process reads what the worker did, across its restarts."""

    meta = {"collection": "job_status", "auto_create_index": False}
    task = StringField(primary_key=True)
    last_run_at = DateTimeField()
    last_outcome = StringField()
    last_success_at = DateTimeField()
    last_report = DictField()

    def as_dict(self) -> dict[str, Any]:
        """The statistics endpoint's view."""
        return {
            "task": self.task,
            "last_run_at": api_timestamp(self.last_run_at) if self.last_run_at else None,
            "last_outcome": self.last_outcome,
            "last_success_at": api_timestamp(self.last_success_at) if self.last_success_at else None,
            "last_report": dict(self.last_report or {}),
        }


def record_run(task: str, outcome: str, report: dict[str, Any] | None) -> None:
    """Upsert a job's status after a run; a success also stores its report. Never raises."""
    success = outcome == "success"
    stamped = ["last_run_at", "last_success_at"] if success else ["last_run_at"]
    changes: dict[str, Any] = {"set__last_outcome": outcome, **({"set__last_report": report or {}} if success else {})}
    try:
        JobStatus.objects(task=task).update_one(upsert=True, __raw__=set_to_server_time(*stamped), **changes)
    except PyMongoError:  # the job itself ran; its status is lost for this run only
        log.warning("could not record the status of job %s", task, exc_info=True)


def all_statuses() -> dict[str, JobStatus]:
    """Every job's status by task name (raises PyMongoError when MongoDB is down)."""
    return {status.task: status for status in JobStatus.objects}


def _on_task(outcome: str) -> Callable[..., None]:
    def job_finished(sender: Any = None, result: Any = None, **_: Any) -> None:
        """Count a run, its drift (audit) and duration; store the job's status."""
        task = JOB_OF_TASK.get(getattr(sender, "name", None) or "")
        if task is None:
            return
        report = result if outcome == "success" and isinstance(result, dict) else None
        ended = "skipped" if report and "skipped" in report else outcome
        m = metrics()
        m.job_runs.labels(task, ended).inc()
        if ended == "success" and report:
            if isinstance(report.get("duration_s"), int | float):
                m.job_duration.labels(task).observe(report["duration_s"])
            if task == "audit":
                drift, repaired = report.get("drift") or {}, report.get("repaired") or {}
                for drift_class in DRIFT_CLASSES:
                    m.audit_drift_found.labels(drift_class).inc(int(drift.get(drift_class, 0)))
                    m.audit_drift_repaired.labels(drift_class).inc(int(repaired.get(drift_class, 0)))
        record_run(task, ended, report)

    return job_finished


def count_job_runs() -> None:
    """Count every job run from Celery's task signals (the jobs stay plain functions), once per process.

    The series exist at 0 from the start."""
    m = metrics()
    for task in JOBS:
        for outcome in ("success", "skipped", "retry", "failure"):
            m.job_runs.labels(task, outcome)
    for drift_class in DRIFT_CLASSES:
        m.audit_drift_found.labels(drift_class)
        m.audit_drift_repaired.labels(drift_class)
    signals.task_success.connect(_on_task("success"), weak=False, dispatch_uid="jollyjet-metrics-success")
    signals.task_retry.connect(_on_task("retry"), weak=False, dispatch_uid="jollyjet-metrics-retry")
    signals.task_failure.connect(_on_task("failure"), weak=False, dispatch_uid="jollyjet-metrics-failure")
