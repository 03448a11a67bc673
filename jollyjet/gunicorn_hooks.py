"""gunicorn server hooks and logger, shared by gunicorn.conf.py (the Procfile's web) and `python -m jollyjet`.

Draining. gunicorn has no hook that runs in a worker when its graceful shutdown starts:
`worker_int` is for SIGINT/SIGQUIT (a quick exit, nothing to drain) and `worker_exit` runs
once the worker has finished its requests, too late. A worker starts draining when its
SIGTERM handler runs (the master sends SIGTERM to every worker on its own SIGTERM, and to
the old workers on a reload), so `post_worker_init` wraps that handler: the flag that
/health/ready reads is set first, then gunicorn's own handler stops the accept loop. Until
the worker exits (in-flight requests finished, or `graceful_timeout` passed), requests it
still answers on connections it already holds see readiness fail.

Bad settings. The master checks them once at start and exits with the one-line message;
without this, every worker would fail to boot with a traceback ending in that line.

Oversized bodies. An oversized body is answered 413 by the app without reading it. The
rest of that body is still on the connection, so it must not be reused for another
request: the answer says `Connection: close` and the connection is closed. Flask's own
`Connection` header is a hop-by-hop header that gunicorn drops, so the decision is taken
here, before the app runs, from the declared Content-Length and the app's own limit.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType
from typing import Any

from gunicorn.glogging import Logger

from jollyjet.ops.health import begin_draining
from jollyjet.settings import SettingsError, load_settings


def declared_length(req: Any) -> int | None:
    """The request's Content-Length, or None (absent or not a number: gunicorn refuses those itself)."""
    for name, value in req.headers:
        if name == "CONTENT-LENGTH":
            return int(value) if value.isdigit() else None
    return None


def pre_request(worker: Any, req: Any) -> None:
    """Mark a request whose declared body exceeds MAX_CONTENT_LENGTH to close its connection."""
    worker.log.debug("%s %s", req.method, req.path)
    limit = getattr(worker.wsgi, "config", {}).get("MAX_CONTENT_LENGTH")
    length = declared_length(req)
    if limit is not None and length is not None and length > limit:
        req.must_close = True  # gunicorn then answers "Connection: close" and closes after the response


def exit_on_bad_settings(server: Any) -> None:
    """In the master, before any worker boots: exit with the settings' one-line problem, if any."""
    try:
        load_settings()
    except SettingsError as error:
        server.log.error("%s", error)
        sys.exit(1)


def post_worker_init(worker: Any) -> None:
    """Wrap the worker's SIGTERM handler: mark the process draining, then let gunicorn stop accepting."""
    graceful_stop = signal.getsignal(signal.SIGTERM)

    def drain(signum: int, frame: FrameType | None) -> None:
        begin_draining()
        worker.log.info("worker %s draining: /health/ready answers 503 until it exits", worker.pid)
        if callable(graceful_stop):
            graceful_stop(signum, frame)

    signal.signal(signal.SIGTERM, drain)


class ServiceLogger(Logger):
    """gunicorn's own messages written by the service's one redacting handler, in the master too.

    gunicorn gives `gunicorn.error` a handler of its own: lines in a second format
    (plain text in a JSON stream) that skip the redaction. Here they propagate to the root
    logger instead, whose handler the master installs from the same settings a worker
    builds its app with, so every line is written once, redacted. gunicorn's access log
    stays off unless asked for (`--access-logfile`): the app's `jollyjet.access` line is
    the one line per request. When asked for, it is redacted too.
    """

    def setup(self, cfg: Any) -> None:
        """gunicorn's setup (also run on a reload), then its messages handed to the root handler."""
        super().setup(cfg)
        # Imported here: the factory pulls in the whole app, and gunicorn.conf.py imports this module for its hooks.
        from jollyjet.app_factory import configure_logging
        from jollyjet.monitoring.logs import redact_also

        try:
            configure_logging(load_settings())
        except SettingsError:
            return  # gunicorn's own handler stays, for on_starting's one line (exit_on_bad_settings)
        for handler in list(self.error_log.handlers):
            self.error_log.removeHandler(handler)
        self.error_log.propagate = True
        for handler in self.access_log.handlers:
            redact_also(handler)
