"""Celery bound to the Flask app (the way Flask's docs do it): tasks run inside the app context.

The Celery app lives in app.extensions["celery"]; the web process uses it to enqueue
jobs by name (jollyjet/maintenance/names.py) and to read task states, the worker
and beat (tasks/) to run them. Every reliability choice is here, explained, and so
is the beat schedule. This package never imports tasks/: a worker loads the task
module by name (Celery's `include`), beat its scheduler class (`beat_scheduler`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from celery import Celery, Task
from flask import Flask

from jollyjet.maintenance import names
from jollyjet.settings import CELERY_RESULT_EXPIRES_S, Settings

TASK_MODULES = ["tasks.jobs"]
BEAT_SCHEDULER = "tasks.beat:SingleBeatScheduler"


class FlaskCelery(Celery):
    """A Celery app that knows its Flask app (beat's scheduler needs the cache services)."""

    flask_app: Flask


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
        # A Redis broker may deliver a task more than once, so every task is idempotent;
        # given that, ack after the task ran: a worker that dies mid-task leaves the
        # message to be redelivered instead of losing the run.
        "task_acks_late": True,
        # ...but not when the worker process itself was killed (OOM, SIGKILL): a task that
        # kills its worker would otherwise loop forever. Periodic jobs simply run again
        # at their next beat tick.
        "task_reject_on_worker_lost": False,
        # Jobs are long and few: a worker takes one message at a time, so a second job
        # is not stuck behind the first on a busy worker while another worker idles.
        "worker_prefetch_multiplier": 1,
        # With acks_late, a task still running when the broker connection drops will be
        # redelivered; cancel it rather than let two copies run.
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "task_soft_time_limit": settings.celery_time_limit_s * 4 // 5,  # time left to clean up
        "task_time_limit": settings.celery_time_limit_s,
        "task_track_started": True,
        # Store the task name with its result, so GET /api/v1/tasks/<id> can say which job it was.
        "result_extended": True,
        "result_expires": CELERY_RESULT_EXPIRES_S,
        "broker_connection_retry_on_startup": True,
        # An admin request that enqueues a job must not hang on a dead broker.
        "broker_connection_timeout": 2,
        "task_publish_retry_policy": {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5},
        "redis_socket_connect_timeout": 2,
        "redis_socket_timeout": 5,
        "worker_hijack_root_logger": False,
        "include": TASK_MODULES,
        "beat_schedule": periodic_job_definitions(settings),
        "beat_scheduler": BEAT_SCHEDULER,
        # Beat answers `celery inspect ping -d celerybeat@<host>` (the compose healthcheck),
        # and stays silent once its scheduler has not ticked for twice its loop interval
        # (Celery's floor: 60 s). Waking at least every 30 s makes that 60 s, not 10 minutes.
        "beat_enable_remote_control": True,
        "beat_max_loop_interval": 30,
    }
    if settings.broker_url.startswith(_REDIS_SCHEMES):
        # Redelivery happens only after the visibility timeout; it exceeds the hard
        # time limit plus the longest retry delay (validated in settings), so a task
        # that is still running is never handed to a second worker.
        config["broker_transport_options"] = {
            "visibility_timeout": settings.celery_visibility_timeout_s,
            "socket_connect_timeout": 2,
        }
    if settings.result_backend.startswith(_REDIS_SCHEMES):
        # Storing a result retries 20 times by default; a worker should fail the store
        # quickly and let the task's own retry handle a Redis outage.
        config["result_backend_transport_options"] = {"retry_policy": {"max_retries": 2}}
    _add_sentinel_master(config, settings)
    return config


def periodic_job_definitions(settings: Settings) -> dict[str, dict[str, Any]]:
    """Celery beat_schedule entries for the enabled jobs (none when the cache is off)."""
    if not settings.cache_enabled:
        return {}
    jobs = [
        ("cache-warm", names.WARM, settings.warm_enabled, settings.warm_interval_s),
        ("cache-cleanup", names.CLEANUP, settings.cleanup_enabled, settings.cleanup_interval_s),
        ("cache-audit", names.AUDIT, settings.audit_enabled, settings.audit_interval_s),
        ("cache-repair", names.REPAIR, settings.repair_enabled, settings.repair_interval_s),
    ]
    return {
        entry: {
            "task": task,
            "schedule": timedelta(seconds=interval),
            # A run that could not start within one interval is superseded by the next.
            "options": {"expires": interval},
        }
        for entry, task, enabled, interval in jobs
        if enabled
    }


_REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "sentinel://")


def _add_sentinel_master(config: dict[str, Any], settings: Settings) -> None:
    # kombu's and Celery's sentinel:// transports find the master by name (master_name).
    # Settings refuse a sentinel:// URL without CELERY_SENTINEL_MASTER.
    for url, options in (
        (settings.broker_url, "broker_transport_options"),
        (settings.result_backend, "result_backend_transport_options"),
    ):
        if url.startswith("sentinel://") and settings.celery_sentinel_master:
            config[options]["master_name"] = settings.celery_sentinel_master
            if settings.celery_sentinel_password is not None:
                password = settings.celery_sentinel_password.get_secret_value()
                config[options]["sentinel_kwargs"] = {"password": password}


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
