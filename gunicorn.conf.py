"""gunicorn settings the command line does not carry; gunicorn reads ./gunicorn.conf.py by itself.

- pre_request: closes the connection after a 413 (jollyjet/ops/health.py).
- Bad settings stop the master at start with one line (on_starting), before any worker boots.
- Draining: a worker's SIGTERM makes /health/ready answer 503 until it exits (post_worker_init).
- graceful_timeout: how long a stopping worker may finish its requests before it is killed;
  docker-compose.yml's stop_grace_period for the web is longer, so the platform never
  kills the master while its workers are still finishing (docs/operations.md).
- logger_class: gunicorn's messages go through the service's one redacting log handler,
  so each line is written once (jollyjet/ops/logs.py). No access log: the app writes
  one JSON access line per request.
- Exact metrics across workers: prometheus-client's multiprocess mode needs
  PROMETHEUS_MULTIPROC_DIR set before a worker imports it, emptied at every start, and
  each exited worker marked dead (its counters stay counted; its live gauges must stop
  counting). docs/monitoring.md explains the choice.
"""

import os

from jollyjet.ops.health import exit_on_bad_settings, post_worker_init, pre_request
from jollyjet.ops.metrics import ENV, empty_directory, multiprocess_dir, prepare_private_dir

__all__ = ["child_exit", "graceful_timeout", "logger_class", "on_starting", "post_worker_init", "pre_request"]

# gunicorn's default, written down because compose's stop grace and the docs depend on it:
# the same as --timeout, the longest a request may keep a worker busy.
graceful_timeout = 30

logger_class = "jollyjet.ops.logs.ServiceLogger"

# At import, in the master, before any worker is forked and loads the app. Kept when the
# deployment set it (and on a reload, which re-reads this file).
if ENV not in os.environ:
    prepare_private_dir("web")


def on_starting(server):  # gunicorn's hook signature
    """Once per start, not per reload: refuse bad settings, and no counts from an earlier start."""
    exit_on_bad_settings(server)
    empty_directory(multiprocess_dir())


def child_exit(server, worker):  # gunicorn's hook signature
    """A worker exited: mark it dead, so gauges of live processes stop counting it."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
