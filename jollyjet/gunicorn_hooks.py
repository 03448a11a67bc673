"""gunicorn server hooks, shared by gunicorn.conf.py (the Procfile's web) and `python -m jollyjet`.

An oversized body is answered 413 by the app without reading it. The rest of that body
is still on the connection, so it must not be reused for another request: the answer
says `Connection: close` and the connection is closed. Flask's own `Connection` header
is a hop-by-hop header that gunicorn drops, so the decision is taken here, before the
app runs, from the declared Content-Length and the app's own limit.
"""

from __future__ import annotations

from typing import Any


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
