"""Worker and beat as threads of the web process, for embedded mode (`python -m jollyjet` with no servers).

Embedded stores (mongomock, fakeredis) and the in-memory broker live in one process,
so a separate `celery worker` could never see them. Here the same jobs run on the
same schedule in daemon threads; with real servers, run the Procfile's processes.
The tasks are jollyjet/jobs' shared tasks, registered with every Celery app.
"""

from __future__ import annotations

import logging
import threading

from celery.beat import EmbeddedService, Scheduler
from flask import Flask

from jollyjet import jobs
from jollyjet.jobs import FlaskCelery
from jollyjet.services import services_of

log = logging.getLogger(__name__)


def start_embedded_jobs(app: Flask) -> None:
    """Start one solo-pool worker thread and one beat thread on the app's Celery app."""
    celery: FlaskCelery = app.extensions["celery"]
    # The worker looks its tasks up on Celery's *default* app when no app is current in
    # its thread; this process has exactly one, so make it the default.
    celery.finalize()
    celery.set_default()
    worker = celery.WorkController(
        pool="solo",
        concurrency=1,
        queues=[celery.conf.task_default_queue],
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
    )
    threading.Thread(target=worker.start, name="embedded-celery-worker", daemon=True).start()
    # The plain, in-memory Scheduler: a persistent one needs a schedule file (one more
    # temporary directory left behind by every run), and the single-send claims guard
    # against a second beat process, which embedded mode cannot have. Its "last run"
    # times die with the process, like the embedded stores.
    beat = EmbeddedService(celery, thread=True, scheduler_cls=Scheduler)
    beat.start()
    settings = services_of(app).settings
    if settings.cache_enabled and settings.warm_enabled and settings.warm_on_worker_start:
        # Only the `celery worker` command sends worker_ready; do here what its handler does.
        celery.send_task(jobs.WARM)
    log.info("embedded mode: Celery worker and beat run as threads of this process")
