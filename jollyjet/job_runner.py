"""Where this deployment's jobs run, said once at start, and the one setup a separate worker must refuse.

Jobs run in one of two places: threads of the serving process (embedded mode: no broker
another process could reach), or separate `celery -A tasks worker` and `beat` processes
reading the broker. In the second case nothing runs a job until those are started, so
the serving process says so. A separate worker on the in-process MongoDB stand-in would
share Redis with the web process but see a database of its own: its audit would find
every cached product missing from "MongoDB" and tombstone it.
"""

from __future__ import annotations

import logging

from kombu.utils.url import maybe_sanitize_url

from jollyjet.settings import Settings


def describe_job_runner(settings: Settings, *, starts_threads: bool) -> str:
    """One line for the start-up log: who runs jobs, and how to start them when it is not this process.

    starts_threads: this process runs the embedded worker and beat when there is no broker
    (`python -m jollyjet` does; `gunicorn app:app` does not).
    """
    if settings.embedded_broker:
        if starts_threads:
            return "jobs: Celery worker and beat run as threads of this process (no broker configured)"
        return (
            "jobs: nothing will run them: no broker is configured (REDIS_URL, CELERY_BROKER_URL) and this "
            "process starts no worker; serve with `python -m jollyjet`, or set REDIS_URL and start "
            "`celery -A tasks worker` and `celery -A tasks beat`"
        )
    broker = maybe_sanitize_url(settings.broker_url)
    return (
        f"jobs: sent to the broker at {broker}; nothing runs them until a worker is started: "
        "`celery -A tasks worker` and one `celery -A tasks beat` (the Procfile's worker and beat)"
    )


def separate_worker_problem(settings: Settings) -> str | None:
    """Why a separate worker or beat process must not start with these settings, or None."""
    if settings.embedded_mongo and not settings.embedded_broker:
        return (
            "refusing to start: MONGODB_URI is unset or mongomock://, an in-process store. A separate worker "
            "or beat would have an empty database of its own while sharing Redis with the web process, and "
            "its audit would tombstone live products. Set MONGODB_URI to the MongoDB the web process uses, "
            "or run `python -m jollyjet` (it runs the worker and beat inside the web process)."
        )
    return None


def log_job_runner(settings: Settings, *, starts_threads: bool) -> None:
    """Log describe_job_runner's line: a warning when no process will run the jobs."""
    line = describe_job_runner(settings, starts_threads=starts_threads)
    nobody = settings.embedded_broker and not starts_threads
    logging.getLogger("jollyjet.jobs").log(logging.WARNING if nobody else logging.INFO, line)
