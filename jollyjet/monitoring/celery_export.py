"""The Celery worker's and beat's metrics, each on its own port (JOLLYJET_WORKER/BEAT_METRICS_ADDRESS).

Chosen over pushing to the web's registry: the worker may run on other hosts, a push
needs the web to be up, and Prometheus can then tell a dead worker (target down)
from an idle one. The worker's pool processes record into the worker's own
multiprocess directory (made fresh by `tasks.app` for each start); the worker's main
process serves their sum. Beat serves its own figures the same way.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import signals
from prometheus_client import start_http_server
from prometheus_client.multiprocess import mark_process_dead

from jollyjet.monitoring.exposition import recorded_registry
from jollyjet.monitoring.process_dir import multiprocess_dir
from jollyjet.settings import Settings

log = logging.getLogger(__name__)


def serve_metrics(settings: Settings, role: str) -> tuple[str, int] | None:
    """Start the metrics HTTP server of this worker or beat process (in a thread); None when not configured."""
    address = settings.metrics_address(role)
    if address is None:
        return None
    registry = recorded_registry()
    host, port = address
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as error:
        # A busy port must not stop the jobs; the missing target shows in Prometheus (up == 0).
        log.error("%s metrics: cannot listen on %s:%d: %s", role, host, port, error)
        return None
    log.info("%s metrics on http://%s:%d/metrics", role, host, port)
    return address


def connect_celery_exporters(settings: Settings) -> None:
    """Serve metrics when the worker or beat starts; forget a pool process's live gauges when it exits."""

    def worker_ready(**_: Any) -> None:
        serve_metrics(settings, "worker")

    def beat_ready(**_: Any) -> None:
        serve_metrics(settings, "beat")

    def pool_process_exit(**_: Any) -> None:
        if multiprocess_dir() is not None:
            mark_process_dead(os.getpid())

    signals.worker_init.connect(worker_ready, weak=False, dispatch_uid="jollyjet-metrics-worker")
    signals.beat_init.connect(beat_ready, weak=False, dispatch_uid="jollyjet-metrics-beat")
    signals.worker_process_shutdown.connect(pool_process_exit, weak=False, dispatch_uid="jollyjet-metrics-child")
