"""gunicorn settings the command line does not carry; gunicorn reads ./gunicorn.conf.py by itself.

- pre_request: closes the connection after a 413 (jollyjet/gunicorn_hooks.py).
- Exact metrics across workers: prometheus-client's multiprocess mode needs
  PROMETHEUS_MULTIPROC_DIR set before a worker imports it, emptied at every start, and
  each exited worker marked dead (its counters stay counted; its live gauges must stop
  counting). docs/monitoring.md explains the choice.
"""

import os

from jollyjet.gunicorn_hooks import pre_request
from jollyjet.monitoring.process_dir import ENV, empty_directory, multiprocess_dir, prepare_private_dir

__all__ = ["child_exit", "on_starting", "pre_request"]

# At import, in the master, before any worker is forked and loads the app. Kept when the
# deployment set it (and on a reload, which re-reads this file).
if ENV not in os.environ:
    prepare_private_dir("web")


def on_starting(server):  # gunicorn's hook signature
    """Once per start, not per reload: no counts from an earlier start."""
    empty_directory(multiprocess_dir())


def child_exit(server, worker):  # gunicorn's hook signature
    """A worker exited: mark it dead, so gauges of live processes stop counting it."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
