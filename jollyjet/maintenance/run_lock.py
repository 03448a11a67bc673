"""One run of a job at a time: a Redis lock per job name.

Celery with a Redis broker may deliver a task twice (visibility-timeout redelivery,
connection loss with acks_late), and beat or an operator may enqueue a job while
the previous run is still going. Every job is idempotent anyway; the lock just
keeps two runs from doing the same work at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager

from jollyjet.cache.backend import CacheBackend, CacheError
from jollyjet.cache.keys import CacheKeys
from jollyjet.extensions import Services
from jollyjet.maintenance.report import JobEntry, JobReport


@contextmanager
def job_run(cache: CacheBackend, keys: CacheKeys, job: str, ttl_s: int) -> Iterator[bool]:
    """Yields True when this run holds the job's lock (released at the end), False when another run does.

    ttl_s should be the task's hard time limit: a killed run's lock expires with it.
    """
    key = keys.job_lock(job)
    token = cache.acquire_lock(key, ttl_s * 1000)
    try:
        yield token is not None
    finally:
        if token is not None:
            # A failed release must not replace the job's own result or error: the lock
            # expires by itself.
            with contextlib.suppress(CacheError):
                cache.release_lock(key, token)


def run_job_once(services: Services, job: str, entry: JobEntry, *, exclusive: bool = True) -> JobReport | None:
    """One run of a job's entry point, under the job's lock when exclusive; None when another run holds it.

    The one way the Celery tasks (tasks/jobs.py) and the CLI (jollyjet/commands.py) start a job."""
    settings = services.settings
    cache = services.require_cache()
    if not exclusive:
        return entry(services, settings)
    with job_run(cache.backend, cache.keys, job, settings.celery_time_limit_s) as mine:
        return entry(services, settings) if mine else None
