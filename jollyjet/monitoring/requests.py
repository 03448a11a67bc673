"""Per-request monitoring: request id, latency histogram by URL rule and cache outcome, access log line."""

from __future__ import annotations

import logging
import os
import re
import time

from flask import Flask, Response, g, request

from jollyjet.monitoring.logs import REQUEST_ID
from jollyjet.monitoring.metrics import HTTP_DURATION, children_of

log = logging.getLogger("jollyjet.access")
HEADER = "X-Request-ID"
# Accepted from clients and proxies as is; anything else (too long, spaces, control or
# quote characters that could forge log lines) is replaced by a fresh id.
_WELL_FORMED = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{7,127}$")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_DURATION = children_of(HTTP_DURATION)


def request_id_from(header: str | None) -> str:
    """The client's id when well-formed, else a new one (32 hex digits)."""
    if header and _WELL_FORMED.match(header):
        return header
    return os.urandom(16).hex()  # what uuid4().hex is, without building a UUID


def _start() -> None:
    # The proxies `g` and `request` resolve the context on every attribute access: once here.
    state = g._get_current_object()
    state.jj_started = time.perf_counter()
    state.jj_request_id = request_id_from(request.headers.get(HEADER))
    state.jj_request_id_token = REQUEST_ID.set(state.jj_request_id)


def _finish(response: Response) -> Response:
    state = g._get_current_object()
    started = state.pop("jj_started", None)
    if started is None:  # a request that failed before the first hook ran
        return response
    seconds = time.perf_counter() - started
    req = request._get_current_object()  # type: ignore[attr-defined]  # LocalProxy's documented accessor
    # The URL rule, never the raw path: one series per endpoint, not one per product id.
    route = req.url_rule.rule if req.url_rule is not None else "unmatched"
    method = req.method if req.method in _METHODS else "other"
    cache = response.headers.get("X-Cache", "none").lower()
    status = str(response.status_code)
    _DURATION(method, route, status, cache).observe(seconds)
    response.headers[HEADER] = state.jj_request_id
    if log.isEnabledFor(logging.INFO):
        fields = {
            "method": method,
            "route": route,
            "path": req.path,
            "status": response.status_code,
            "cache": cache,
            "duration_ms": round(seconds * 1000, 3),
        }
        # log.info() would first walk the stack for the caller's file and line, which no
        # formatter here prints; one line per request makes that walk worth skipping.
        log.handle(
            log.makeRecord(log.name, logging.INFO, __file__, 0, "%s %s %s", (method, route, status), None, extra=fields)
        )
    return response


def _forget(_: BaseException | None) -> None:
    token = g.pop("jj_request_id_token", None)
    if token is not None:
        REQUEST_ID.reset(token)


def register_request_hooks(app: Flask) -> None:
    """Time, label and log every request of this app."""
    app.before_request(_start)
    app.after_request(_finish)
    app.teardown_request(_forget)
