"""Job metrics from Celery's task signals, in whichever process runs the task (a pool child).

Signals rather than code in each task: the jobs stay plain functions, and every run
is counted however it ends (success, skipped, retry, failure).
"""

from __future__ import annotations

from typing import Any

from celery import signals

from jollyjet import jobs
from jollyjet.jobs.audit import DRIFT_CLASSES
from jollyjet.monitoring.job_status import record_run
from jollyjet.monitoring.metrics import AUDIT_DRIFT_FOUND, AUDIT_DRIFT_REPAIRED, JOB_DURATION, JOB_RUNS

# Celery task name → the short name used in labels, the admin API and the docs.
TASKS = {
    jobs.WARM: "warm",
    jobs.CLEANUP: "cleanup",
    jobs.AUDIT: "audit",
    jobs.REPAIR: "repair",
}
OUTCOMES = ("success", "skipped", "retry", "failure")


def _task(sender: Any) -> str | None:
    return TASKS.get(getattr(sender, "name", None) or "")


def job_finished(task: str, outcome: str, report: dict[str, Any] | None) -> None:
    """Count a run, its drift (audit) and duration; store the job's status."""
    JOB_RUNS.labels(task, outcome).inc()
    if outcome == "success" and report:
        if isinstance(report.get("duration_s"), int | float):
            JOB_DURATION.labels(task).observe(report["duration_s"])
        if task == "audit":
            for drift_class in DRIFT_CLASSES:
                AUDIT_DRIFT_FOUND.labels(drift_class).inc(int((report.get("drift") or {}).get(drift_class, 0)))
                AUDIT_DRIFT_REPAIRED.labels(drift_class).inc(int((report.get("repaired") or {}).get(drift_class, 0)))
    record_run(task, outcome, report)


def _on_success(sender: Any = None, result: Any = None, **_: Any) -> None:
    task = _task(sender)
    if task is not None:
        report = result if isinstance(result, dict) else None
        job_finished(task, "skipped" if report and "skipped" in report else "success", report)


def _on_retry(sender: Any = None, **_: Any) -> None:
    task = _task(sender)
    if task is not None:
        job_finished(task, "retry", None)


def _on_failure(sender: Any = None, **_: Any) -> None:
    task = _task(sender)
    if task is not None:
        job_finished(task, "failure", None)


def connect_job_signals() -> None:
    """Connect the handlers (once per process, whatever the number of apps built) and create the series at 0."""
    for task in TASKS.values():
        for outcome in OUTCOMES:
            JOB_RUNS.labels(task, outcome)
    for drift_class in DRIFT_CLASSES:
        AUDIT_DRIFT_FOUND.labels(drift_class)
        AUDIT_DRIFT_REPAIRED.labels(drift_class)
    signals.task_success.connect(_on_success, weak=False, dispatch_uid="jollyjet-metrics-success")
    signals.task_retry.connect(_on_retry, weak=False, dispatch_uid="jollyjet-metrics-retry")
    signals.task_failure.connect(_on_failure, weak=False, dispatch_uid="jollyjet-metrics-failure")
