"""The Celery tasks: thin wrappers that run a maintenance job with its lock, retries and report.

Every task is idempotent (a second run finds nothing left to do), holds a per-job
lock so two deliveries of it do not work at once, and retries transient Redis or
MongoDB failures with exponential backoff and jitter.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from celery import Task, shared_task
from pymongo.errors import ConnectionFailure, ExecutionTimeout, WTimeoutError

from jollyjet.cache.backend import CacheError
from jollyjet.maintenance import names
from jollyjet.maintenance.audit import AuditOptions, CacheAudit
from jollyjet.maintenance.cleanup import CacheCleanup, CleanupOptions
from jollyjet.maintenance.repair import repair_failed_writes
from jollyjet.maintenance.run_lock import job_run
from jollyjet.maintenance.warming import warm_cache
from jollyjet.products.repository import DatabaseUnavailable
from jollyjet.services import Services, current_services

TRANSIENT = (CacheError, DatabaseUnavailable, ConnectionFailure, ExecutionTimeout, WTimeoutError)


def run_job(task: Task, job: str, body: Callable[[Services], dict[str, Any]]) -> dict[str, Any]:
    """Run body under the job's lock; transient failures become retries with backoff."""
    services = current_services()
    settings = services.settings
    cache = services.cache
    if cache is None:
        return {"skipped": "the cache is disabled (JOLLYJET_CACHE_ENABLED=false)"}
    try:
        with job_run(cache.backend, cache.keys, job, settings.celery_time_limit_s) as mine:
            if not mine:
                return {"skipped": "another run of this job is in progress"}
            return body(services)
    except TRANSIENT as error:
        delay = min(settings.celery_retry_backoff_max_s, 2 ** (task.request.retries + 1))
        countdown = random.uniform(delay / 2, delay)  # jitter: retries of many tasks do not align
        raise task.retry(exc=error, countdown=countdown, max_retries=settings.celery_max_retries) from error


def _warm(services: Services) -> dict[str, Any]:
    cache = services.require_cache()
    settings = services.settings
    return warm_cache(
        cache.repository, cache.popularity, settings.warm_top_products, settings.warm_top_queries
    ).as_dict()


def _cleanup(services: Services) -> dict[str, Any]:
    cache = services.require_cache()
    settings = services.settings
    options = CleanupOptions(
        scan_batch=settings.cleanup_scan_batch,
        popularity_max=settings.popularity_max_members,
        repair_retention=timedelta(days=settings.repair_retention_days),
    )
    cleanup = CacheCleanup(cache.backend, cache.keys, cache.writer, services.mongo, cache.repairs, options)
    return cleanup.run().as_dict()


def _audit(services: Services) -> dict[str, Any]:
    cache = services.require_cache()
    settings = services.settings
    options = AuditOptions(
        mode=settings.audit_mode,
        sample_rate=settings.audit_sample_rate,
        max_keys=settings.audit_max_keys,
        batch=settings.audit_batch,
        repair=settings.audit_repair,
        history=settings.audit_history,
    )
    return CacheAudit(cache.backend, cache.keys, cache.writer, services.mongo, options).run().as_dict()


def _repair(services: Services) -> dict[str, Any]:
    cache = services.require_cache()
    report = repair_failed_writes(
        cache.repairs,
        cache.backend,
        cache.writer,
        services.mongo,
        services.settings.repair_batch,
        also_invalidate=(cache.categories.invalidate,),
    )
    return report.as_dict()


@shared_task(name=names.WARM, bind=True)
def warm(self: Task) -> dict[str, Any]:
    """Fill the most-read products and list pages."""
    return run_job(self, "warm", _warm)


@shared_task(name=names.CLEANUP, bind=True)
def cleanup(self: Task) -> dict[str, Any]:
    """Clean what TTLs do not: old schemas and generations, keys without TTL, popularity, repair records."""
    return run_job(self, "cleanup", _cleanup)


@shared_task(name=names.AUDIT, bind=True)
def audit(self: Task) -> dict[str, Any]:
    """Compare cached products with MongoDB, repair drift, store the result."""
    return run_job(self, "audit", _audit)


@shared_task(name=names.REPAIR, bind=True)
def repair(self: Task) -> dict[str, Any]:
    """Replay cache writes that failed after their database write."""
    return run_job(self, "repair", _repair)
