"""The Celery tasks: each runs one job's entry point (run_<job>) under its lock, with retries.

Every task is idempotent (a second run finds nothing left to do), holds a per-job
lock so two deliveries of it do not work at once, and retries transient Redis or
MongoDB failures with exponential backoff and jitter.
"""

from __future__ import annotations

import random
from typing import Any

from celery import Task, shared_task
from pymongo.errors import ConnectionFailure, ExecutionTimeout, WTimeoutError

from jollyjet.cache.backend import CacheError
from jollyjet.extensions import current_services
from jollyjet.maintenance import names
from jollyjet.maintenance.audit import run_audit
from jollyjet.maintenance.cleanup import run_cleanup
from jollyjet.maintenance.repair import run_repair
from jollyjet.maintenance.report import JobEntry
from jollyjet.maintenance.run_lock import run_job_once
from jollyjet.maintenance.warming import run_warm
from jollyjet.products.repository import DatabaseUnavailable
from jollyjet.settings import CELERY_MAX_RETRIES

TRANSIENT = (CacheError, DatabaseUnavailable, ConnectionFailure, ExecutionTimeout, WTimeoutError)


@shared_task(name=names.WARM, bind=True)
def warm(self: Task) -> dict[str, Any]:
    """Fill the most-read products and list pages."""
    return run_job(self, "warm", run_warm)


@shared_task(name=names.CLEANUP, bind=True)
def cleanup(self: Task) -> dict[str, Any]:
    """Clean what TTLs do not: old schemas and generations, keys without TTL, popularity, repair records."""
    return run_job(self, "cleanup", run_cleanup)


@shared_task(name=names.AUDIT, bind=True)
def audit(self: Task) -> dict[str, Any]:
    """Compare cached products with MongoDB, repair drift, store the result."""
    return run_job(self, "audit", run_audit)


@shared_task(name=names.REPAIR, bind=True)
def repair(self: Task) -> dict[str, Any]:
    """Replay cache writes that failed after their database write."""
    # Without the job lock: the replay is what lifts the recovery fence, and a lock can be
    # orphaned by the very failure being repaired (a SET NX that timed out on the client
    # lands late, or an old snapshot brings back a run's lock): it would block the replay
    # for the whole hard time limit. Two concurrent replays are safe: every rewrite is
    # version-guarded and records are marked done only after their own rewrite.
    return run_job(self, "repair", run_repair, exclusive=False)


def run_job(task: Task, job: str, entry: JobEntry, exclusive: bool = True) -> dict[str, Any]:
    """Run the job's entry point (under its lock when exclusive); transient failures become retries with backoff."""
    services = current_services()
    settings = services.settings
    if services.cache is None:
        return {"skipped": "the cache is disabled (JOLLYJET_CACHE_ENABLED=false)"}
    try:
        report = run_job_once(services, job, entry, exclusive=exclusive)
        if report is None:
            return {"skipped": "another run of this job is in progress"}
        return report.as_dict()
    except TRANSIENT as error:
        delay = min(settings.celery_retry_backoff_max_s, 2 ** (task.request.retries + 1))
        countdown = random.uniform(delay / 2, delay)  # jitter: retries of many tasks do not align
        raise task.retry(exc=error, countdown=countdown, max_retries=CELERY_MAX_RETRIES) from error
