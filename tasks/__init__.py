"""Celery worker and beat: `celery -A tasks worker`, `celery -A tasks beat` (see Procfile).

The Celery app is the Flask app's (jollyjet/celery_app.py: config and beat schedule),
plus the worker's signal handlers. Importing this package connects nothing: the app
is built on first access to `tasks.app`, which is what `celery -A tasks` asks for.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import signals

from jollyjet import create_app
from jollyjet.celery_app import FlaskCelery
from jollyjet.db import connect_mongo
from jollyjet.job_runner import separate_worker_problem
from jollyjet.maintenance import names
from jollyjet.ops.metrics import QueryCounter, connect_celery_exporters, prepare_private_dir
from jollyjet.settings import Settings, SettingsError, load_settings
from tasks import jobs as jobs  # registers the shared tasks with every Celery app

log = logging.getLogger(__name__)
_celery: FlaskCelery | None = None


def __getattr__(name: str) -> Any:
    # Module-level __getattr__ (PEP 562): `celery -A tasks` looks up `tasks.app`.
    global _celery
    if name == "app":
        if _celery is None:
            settings = _settings_or_exit()
            problem = separate_worker_problem(settings)
            if problem:
                raise SystemExit(problem)
            # The `celery worker|beat` command: the pool processes it forks record their metrics
            # in files the main process sums, in a directory of this start's own. Chosen
            # before create_app, which is what first imports prometheus_client.
            prepare_private_dir("celery")
            _celery = create_celery(settings)
        return _celery
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _settings_or_exit() -> Settings:
    try:
        return load_settings()
    except SettingsError as error:
        raise SystemExit(str(error)) from None


def create_celery(settings: Settings | None = None) -> FlaskCelery:
    """The Celery app for `celery -A tasks worker|beat`: the Flask app's, with the worker's hooks."""
    settings = settings or _settings_or_exit()
    flask_app = create_app(settings)
    celery: FlaskCelery = flask_app.extensions["celery"]
    connect_worker_signals(celery, settings)
    connect_celery_exporters(settings)
    return celery


def connect_worker_signals(celery: FlaskCelery, settings: Settings) -> None:
    """Reconnect MongoDB in forked pool processes; warm the cache when a worker is ready."""

    parent_pid = os.getpid()

    def reconnect_mongo(**_: Any) -> None:
        # pymongo's client is not fork-safe: each prefork child opens its own. The solo
        # pool sends this signal too, in this very process: keep the connection there
        # (reconnecting would also empty an in-process mongomock store).
        if os.getpid() != parent_pid:
            connect_mongo(settings, [QueryCounter()])

    def warm_on_start(sender: Any = None, **_: Any) -> None:
        if sender is not None and sender.app is not celery:
            return  # another Celery app in this process (tests)
        if settings.warm_enabled and settings.warm_on_worker_start and settings.cache_enabled:
            celery.send_task(names.WARM)
            log.info("worker ready: cache warming enqueued")

    signals.worker_process_init.connect(reconnect_mongo, weak=False)
    signals.worker_ready.connect(warm_on_start, weak=False)
