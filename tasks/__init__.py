"""`celery -A tasks worker|beat` (the Procfile's worker and beat): the Flask app's Celery app, built on import.

As `make_celery.py` in Flask's examples/celery: only the celery command imports this module (an import-linter
contract keeps jollyjet from it). The tasks and schedule are jollyjet/jobs'; this adds what only a worker needs.
"""

from __future__ import annotations

import os
from typing import Any

from celery import signals

from jollyjet import create_app
from jollyjet.db import connect_mongo
from jollyjet.jobs import FlaskCelery, separate_worker_problem, warm_on_start
from jollyjet.ops.metrics import QueryCounter, connect_celery_exporters, prepare_private_dir
from jollyjet.settings import SettingsError, load_settings

try:
    settings = load_settings()
except SettingsError as error:
    raise SystemExit(str(error)) from None
if problem := separate_worker_problem(settings):
    raise SystemExit(problem)
# Forked pool processes record metrics in files the main process sums, in a directory of this start's own;
# chosen before create_app, which first imports prometheus_client.
prepare_private_dir("celery")
app: FlaskCelery = create_app(settings).extensions["celery"]
_parent_pid = os.getpid()


@signals.worker_process_init.connect
def reconnect_mongo(**_: Any) -> None:
    """pymongo's client is not fork-safe: each prefork child opens its own."""
    # The solo pool sends this signal too, in this very process: keep the connection there.
    if os.getpid() != _parent_pid:
        connect_mongo(settings, [QueryCounter()])


@signals.worker_ready.connect
def on_worker_ready(**_: Any) -> None:
    """Warm the cache when the worker is ready."""
    warm_on_start(app, settings)


connect_celery_exporters(settings)
