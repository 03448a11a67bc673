"""Liveness and readiness endpoints for load balancers and orchestrators.

Readiness also fails while the process drains: from the SIGTERM that starts a graceful
shutdown (jollyjet/gunicorn_hooks.py sets the flag) until the process exits, a probe still
answered on a kept-alive or already accepted connection says 503 "draining", so a load
balancer takes the instance out instead of routing new requests to a process that is leaving.
"""

from __future__ import annotations

import threading
from typing import Any

import mongoengine
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate
from pymongo.errors import PyMongoError

from jollyjet.cache.backend import CacheError
from jollyjet.extensions import current_services

blp = Blueprint("health", __name__, url_prefix="/health", description="Health checks")

# Process-wide, like the signal that sets it: every app instance of a draining process drains.
_draining = threading.Event()


def begin_draining() -> None:
    """This process has started a graceful shutdown: readiness answers 503 until it exits."""
    _draining.set()


class LiveSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["ok"]))


class ReadySchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["ok", "degraded", "unavailable", "draining"]))
    mongodb = fields.String(required=True, validate=validate.OneOf(["ok", "down"]))
    redis = fields.String(required=True, validate=validate.OneOf(["ok", "down", "disabled"]))
    breaker = fields.String(required=True, metadata={"description": "closed, open, half_open or disabled"})


@blp.route("/live")
class Live(MethodView):
    @blp.response(200, LiveSchema)
    @blp.doc(operationId="live")
    def get(self) -> dict[str, str]:
        """The process is up (no dependencies checked)."""
        return {"status": "ok"}


def _mongo_ok() -> bool:
    try:
        mongoengine.get_db().command("ping")
    except PyMongoError:
        return False
    return True


def _cache_state() -> str:
    cache = current_services().cache
    if cache is None:
        return "disabled"
    try:
        return "ok" if cache.backend.ping() else "down"
    except CacheError:
        return "down"


@blp.route("/ready")
class Ready(MethodView):
    @blp.response(200, ReadySchema)
    @blp.alt_response(503, schema=ReadySchema, description="MongoDB is unreachable, or the process is draining")
    @blp.doc(operationId="ready")
    def get(self) -> tuple[dict[str, Any], int]:
        """Ready to serve: MongoDB answers and the process is not shutting down. A Redis outage only degrades."""
        services = current_services()
        mongo = _mongo_ok()
        cache = _cache_state()
        breaker = services.cache.breaker.state.value if services.cache else "disabled"
        status = "ok" if mongo and cache in ("ok", "disabled") else ("degraded" if mongo else "unavailable")
        draining = _draining.is_set()
        body = {
            "status": "draining" if draining else status,
            "mongodb": "ok" if mongo else "down",
            "redis": cache,
            "breaker": breaker,
        }
        return body, 200 if mongo and not draining else 503
