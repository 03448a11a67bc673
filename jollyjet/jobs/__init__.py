"""The cache jobs (warm, cleanup, audit, repair) and how they run: Celery bound to the Flask app.

Each job is a plain function `run_<job>(services, settings) -> JobReport` (warm.py, cleanup.py, audit.py,
repair.py), wrapped in a @shared_task as in Flask's examples/celery; `celery -A tasks worker|beat` builds the
app (tasks/__init__.py). Every task is idempotent, holds a per-job lock so two deliveries do not work at once,
and retries transient Redis or MongoDB failures with backoff and jitter. The Celery config and beat schedule are here.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Protocol

from celery import Celery, Task, shared_task
from celery.beat import PersistentScheduler, ScheduleEntry
from flask import Flask
from kombu.utils.url import maybe_sanitize_url
from pymongo.errors import ConnectionFailure, ExecutionTimeout, WTimeoutError

from jollyjet.cache.store import CacheError
from jollyjet.extensions import Services, current_services, services_of
from jollyjet.jobs.audit import run_audit
from jollyjet.jobs.cleanup import run_cleanup
from jollyjet.jobs.repair import run_repair
from jollyjet.jobs.warm import run_warm
from jollyjet.products.repository import DatabaseUnavailable
from jollyjet.settings import CELERY_MAX_RETRIES, CELERY_RESULT_EXPIRES_S, CLEANUP_INTERVAL_S, WARM_INTERVAL_S, Settings

log = logging.getLogger(__name__)
# Celery task names: the admin API enqueues by name, the shared tasks register under it.
WARM = "jollyjet.cache.warm"
CLEANUP = "jollyjet.cache.cleanup"
AUDIT = "jollyjet.cache.audit"
REPAIR = "jollyjet.cache.repair"
TRANSIENT = (CacheError, DatabaseUnavailable, ConnectionFailure, ExecutionTimeout, WTimeoutError)
_REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "sentinel://")


class JobReport(Protocol):
    """One run's report (WarmReport, CleanupReport, AuditRun, RepairReport)."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the Celery task's result, the log line, the metrics."""
        ...


JobEntry = Callable[[Services, Settings], JobReport]


def run_job_once(services: Services, job: str, entry: JobEntry, *, exclusive: bool = True) -> JobReport | None:
    """One run of a job's entry point (the tasks' and the CLI's), under the job's lock when exclusive; None if held."""
    # A Redis broker may deliver a task twice, and beat or an operator may enqueue a job while it runs.
    settings, cache = services.settings, services.require_cache()
    if not exclusive:
        return entry(services, settings)
    key = cache.keys.job_lock(job)
    # The lock lasts the task's hard time limit: a killed run's lock expires with it.
    token = cache.backend.acquire_lock(key, settings.celery_time_limit_s * 1000)
    if token is None:
        return None
    try:
        return entry(services, settings)
    finally:
        with contextlib.suppress(CacheError):  # must not replace the run's result or error; the lock expires
            cache.backend.release_lock(key, token)


def run_job(task: Task, job: str, entry: JobEntry, exclusive: bool = True) -> dict[str, Any]:
    """Run the job's entry point (under its lock when exclusive); transient failures become retries with backoff."""
    services = current_services()
    if services.cache is None:
        return {"skipped": "the cache is disabled (JOLLYJET_CACHE_ENABLED=false)"}
    try:
        report = run_job_once(services, job, entry, exclusive=exclusive)
        if report is None:
            return {"skipped": "another run of this job is in progress"}
        return report.as_dict()
    except TRANSIENT as error:
        delay = min(services.settings.celery_retry_backoff_max_s, 2 ** (task.request.retries + 1))
        countdown = random.uniform(delay / 2, delay)  # jitter: retries of many tasks do not align
        raise task.retry(exc=error, countdown=countdown, max_retries=CELERY_MAX_RETRIES) from error


@shared_task(name=WARM, bind=True)
def warm_task(self: Task) -> dict[str, Any]:
    """Fill the most-read products and list pages."""
    return run_job(self, "warm", run_warm)


@shared_task(name=CLEANUP, bind=True)
def cleanup_task(self: Task) -> dict[str, Any]:
    """Clean what TTLs do not: old schemas and generations, keys without TTL, popularity, repair records."""
    return run_job(self, "cleanup", run_cleanup)


@shared_task(name=AUDIT, bind=True)
def audit_task(self: Task) -> dict[str, Any]:
    """Compare cached products with MongoDB, repair drift, store the result."""
    return run_job(self, "audit", run_audit)


@shared_task(name=REPAIR, bind=True)
def repair_task(self: Task) -> dict[str, Any]:
    """Replay cache writes that failed after their database write."""
    # Without the job lock: the replay lifts the recovery fence, and the failure being repaired can orphan a
    # lock (a timed-out SET NX landing late, an old snapshot). Two replays are safe: every rewrite is guarded.
    return run_job(self, "repair", run_repair, exclusive=False)


def periodic_job_definitions(settings: Settings) -> dict[str, dict[str, Any]]:
    """Celery beat_schedule entries for the enabled jobs (none when the cache is off)."""
    if not settings.cache_enabled:
        return {}
    jobs = [
        ("cache-warm", WARM, settings.job_on("warm"), WARM_INTERVAL_S),
        ("cache-cleanup", CLEANUP, settings.job_on("cleanup"), CLEANUP_INTERVAL_S),
        ("cache-audit", AUDIT, settings.job_on("audit"), settings.audit_interval_s),
        ("cache-repair", REPAIR, settings.job_on("repair"), settings.repair_interval_s),
    ]
    # A run that could not start within one interval is superseded by the next.
    return {
        entry: {"task": task, "schedule": timedelta(seconds=interval), "options": {"expires": interval}}
        for entry, task, enabled, interval in jobs
        if enabled
    }


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings derived from the validated service settings."""
    config: dict[str, Any] = {
        "broker_url": settings.broker_url,
        "result_backend": settings.result_backend,
        "task_default_queue": settings.celery_queue,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "timezone": "UTC",
        "enable_utc": True,
        # Tasks are idempotent, so ack after the run: a worker dying mid-task leaves the message redelivered.
        "task_acks_late": True,
        # ...but not when the task killed its worker (OOM, SIGKILL): it would loop forever; beat runs it again.
        "task_reject_on_worker_lost": False,
        # Jobs are long and few: a second job must not wait behind the first while another worker idles.
        "worker_prefetch_multiplier": 1,
        # With acks_late a running task is redelivered when the broker connection drops: cancel this copy.
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "task_soft_time_limit": settings.celery_time_limit_s * 4 // 5,  # time left to clean up
        "task_time_limit": settings.celery_time_limit_s,
        "task_track_started": True,
        "result_extended": True,  # the task name with its result: GET /api/v1/tasks/<id> says which job
        "result_expires": CELERY_RESULT_EXPIRES_S,
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": 2,  # an admin request that enqueues a job must not hang on a dead broker
        "task_publish_retry_policy": {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5},
        "redis_socket_connect_timeout": 2,
        "redis_socket_timeout": 5,
        "worker_hijack_root_logger": False,
        "beat_schedule": periodic_job_definitions(settings),
        "beat_scheduler": "jollyjet.jobs:SingleBeatScheduler",
        # Beat answers `celery inspect ping -d celerybeat@<host>` (the compose healthcheck) until its scheduler
        # misses two loop intervals (floor 60 s): waking every 30 s makes that 60 s, not 10 minutes.
        "beat_enable_remote_control": True,
        "beat_max_loop_interval": 30,
    }
    if settings.broker_url.startswith(_REDIS_SCHEMES):
        # Longer than the hard time limit plus the longest retry delay (validated in settings): a running
        # task is never redelivered to a second worker.
        config["broker_transport_options"] = {
            "visibility_timeout": settings.celery_visibility_timeout_s,
            "socket_connect_timeout": 2,
        }
    if settings.result_backend.startswith(_REDIS_SCHEMES):
        # Not Celery's 20 retries: fail the store quickly and let the task's own retry ride out the outage.
        config["result_backend_transport_options"] = {"retry_policy": {"max_retries": 2}}
    # sentinel:// transports find the master by name (settings require CELERY_SENTINEL_MASTER with them).
    for url, options in (
        (settings.broker_url, "broker_transport_options"),
        (settings.result_backend, "result_backend_transport_options"),
    ):
        if url.startswith("sentinel://") and settings.celery_sentinel_master:
            config[options]["master_name"] = settings.celery_sentinel_master
            if settings.celery_sentinel_password is not None:
                password = settings.celery_sentinel_password.get_secret_value()
                config[options]["sentinel_kwargs"] = {"password": password}
    return config


class FlaskCelery(Celery):
    """A Celery app that knows its Flask app (beat's scheduler needs the cache services)."""

    flask_app: Flask


def celery_init_app(app: Flask, settings: Settings) -> FlaskCelery:
    """Create the Celery app for this Flask app and store it in app.extensions["celery"]."""

    class FlaskTask(Task):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            with app.app_context():
                return self.run(*args, **kwargs)

    celery = FlaskCelery(app.import_name, task_cls=FlaskTask)
    celery.config_from_object(celery_config(settings))
    celery.flask_app = app
    app.extensions["celery"] = celery
    return celery


def slot_of(entry: ScheduleEntry, now: float) -> tuple[int, float] | None:
    """(slot number, interval seconds) of an interval entry at `now`; None for other schedules."""
    run_every = getattr(entry.schedule, "run_every", None)
    if run_every is None:
        return None
    interval = run_every.total_seconds()
    return (int(now // interval), interval) if interval > 0 else None


class SingleBeatScheduler(PersistentScheduler):
    """A beat scheduler that sends each periodic slot once, even if two beat processes run."""

    app: FlaskCelery

    def apply_entry(self, entry: ScheduleEntry, producer: Any = None) -> None:
        """Send the entry only if this process claims its slot."""
        if self.claim(entry, time.time()):
            super().apply_entry(entry, producer=producer)

    def claim(self, entry: ScheduleEntry, now: float) -> bool:
        """True when this process may send entry's current slot."""
        # It claims the slot (floor(now / interval)) with SET NX for two intervals. A double send near a
        # boundary (clock skew between hosts) costs a skipped run: the jobs are locked.
        slot = slot_of(entry, now)
        cache = services_of(self.app.flask_app).cache
        if slot is None or cache is None:
            return True
        number, interval = slot
        key = cache.keys.beat_claim(entry.name, number)
        try:
            token = cache.backend.acquire_lock(key, max(2000, int(interval * 2000)))
        except CacheError as error:
            # Redis (the lock and, by default, the broker) is down: sending would fail too.
            log.warning("beat: cannot claim %s (%s); skipping this run", entry.name, type(error).__name__)
            return False
        if token is None:
            log.info("beat: %s slot %d already sent by another beat process", entry.name, number)
        return token is not None


def describe_job_runner(settings: Settings, *, starts_threads: bool) -> str:
    """One line for the start-up log: who runs jobs, and how to start them when it is not this process."""
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


def warm_on_start(celery: Celery, settings: Settings) -> None:
    """A ready worker enqueues the warming, unless the cache is off or JOLLYJET_JOBS_OFF names it."""
    if settings.cache_enabled and settings.job_on("warm"):
        celery.send_task(WARM)
        log.info("worker ready: cache warming enqueued")


def log_job_runner(settings: Settings, *, starts_threads: bool) -> None:
    """Log describe_job_runner's line: a warning when no process will run the jobs."""
    nobody = settings.embedded_broker and not starts_threads
    log.log(logging.WARNING if nobody else logging.INFO, describe_job_runner(settings, starts_threads=starts_threads))


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
