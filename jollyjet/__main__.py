"""`python -m jollyjet` (what `scripts/serve` runs): the API on gunicorn, one worker process with threads.

The embedded stores (mongomock, fakeredis) and in-memory broker live in that process, where no separate
`celery worker` could see them: the Celery worker and beat run there as daemon threads (jollyjet/jobs'
shared tasks, so tasks/ is never imported), and it creates the indexes and demo catalog itself. With
MONGODB_URI and REDIS_URL set it serves the real servers the same way; for several processes, use the Procfile.
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
from collections.abc import Sequence

from celery.beat import EmbeddedService, Scheduler
from flask import Flask
from gunicorn.app.base import BaseApplication

from jollyjet.app_factory import create_app
from jollyjet.commands import catalog_products, ensure_indexes, seed_products
from jollyjet.db import mongo_problem
from jollyjet.extensions import services_of
from jollyjet.jobs import FlaskCelery, log_job_runner, warm_on_start
from jollyjet.ops.health import post_worker_init, pre_request
from jollyjet.ops.logs import ServiceLogger, configure_logging
from jollyjet.settings import Settings, SettingsError, load_settings

log = logging.getLogger("jollyjet.serve")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; every option says what it does and its default."""
    parser = argparse.ArgumentParser(
        prog="python -m jollyjet",
        description="Serve the JollyJet catalog API with gunicorn (one worker process, several threads).",
        epilog="Every other setting is an environment variable: see docs/configuration.md. "
        "With no MONGODB_URI and REDIS_URL, in-process stores are used and jobs run as threads.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"), help="address to listen on ($HOST)")
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("PORT", "8000")), help="port to listen on ($PORT)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=int(os.environ.get("WEB_THREADS", "8")),
        help="request threads of the one worker process ($WEB_THREADS)",
    )
    parser.add_argument(
        "--no-seed",
        action="store_true",
        help="with the in-process MongoDB stand-in, start with an empty catalog instead of the 48 demo products",
    )
    return parser.parse_args(argv)


def start_embedded_jobs(app: Flask) -> None:
    """Start one solo-pool worker thread and one beat thread on the app's Celery app."""
    celery: FlaskCelery = app.extensions["celery"]
    # The worker looks its tasks up on Celery's *default* app when none is current in its thread.
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
    # The in-memory Scheduler: no schedule file left behind, and no second beat to claim slots against.
    EmbeddedService(celery, thread=True, scheduler_cls=Scheduler).start()
    # Only the `celery worker` command sends worker_ready; do here what its handler does.
    warm_on_start(celery, services_of(app).settings)
    log.info("embedded mode: Celery worker and beat run as threads of this process")


class OneProcessServer(BaseApplication):
    """gunicorn with the app built inside its one worker, where the embedded stores and job threads live."""

    def __init__(self, settings: Settings, args: argparse.Namespace) -> None:
        self.settings, self.args = settings, args
        super().__init__()

    def load_config(self) -> None:
        """One gthread worker, the Procfile's timeouts and the shared hooks (no gunicorn command line or config)."""
        options = {
            "bind": f"{self.args.host}:{self.args.port}",
            "workers": 1,
            "worker_class": "gthread",
            "threads": self.args.threads,
            "timeout": 30,
            "graceful_timeout": 30,  # as gunicorn.conf.py: a SIGTERM lets requests in flight finish
            "logger_class": ServiceLogger,  # one handler for every line; the app's access line, not gunicorn's
            "control_socket_disable": True,  # see docs/operations.md (--no-control-socket)
            "pre_request": pre_request,
            "post_worker_init": post_worker_init,
        }
        for name, value in options.items():
            self.cfg.set(name, value)

    def load(self) -> Flask:
        """Build the app in the worker process: the embedded store set up, the job threads when there is no broker."""
        app = create_app(self.settings)
        if self.settings.embedded_mongo:
            # Nothing else can reach the in-process store to run `ensure-indexes` or `seed`: do both here.
            with app.app_context():
                ensure_indexes()
                if not self.args.no_seed:
                    seed_products(services_of(app).products, catalog_products())
        if self.settings.embedded_broker:
            start_embedded_jobs(app)
        return app


def main(argv: Sequence[str] | None = None) -> None:
    """Parse flags, validate settings and MongoDB, say who runs jobs, serve."""
    args = parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as error:
        raise SystemExit(str(error)) from None
    if problem := mongo_problem(settings):
        raise SystemExit(problem)
    configure_logging(settings)  # the app's own redacting handler; a second (basicConfig's) doubled every line
    log_job_runner(settings, starts_threads=True)
    print(f"JollyJet catalog API on http://{args.host}:{args.port}/api/v1/products", flush=True)
    print(f"API docs:               http://{args.host}:{args.port}/api/docs", flush=True)
    OneProcessServer(settings, args).run()


if __name__ == "__main__":
    main()
