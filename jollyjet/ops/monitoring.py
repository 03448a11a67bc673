"""GET /metrics (Prometheus text) and GET /api/v1/cache/stats (the same registry's since-start figures, for people)."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import Response, current_app
from flask.views import MethodView
from flask_smorest import Blueprint

from jollyjet.api import ApiBlueprint, errors, require_token
from jollyjet.extensions import current_services
from jollyjet.monitoring.setup import Monitoring, monitoring_of

metrics_blp = Blueprint("metrics", __name__, description="Prometheus metrics")
stats_blp = ApiBlueprint("cache_stats", __name__, url_prefix="/api/v1", description="Cache statistics (bearer token)")
_PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


def _monitoring() -> Monitoring:
    return monitoring_of(current_app)


@metrics_blp.route("/metrics")
class Metrics(MethodView):
    @metrics_blp.doc(
        responses={
            "200": {
                "description": "Prometheus text format 0.0.4 (docs/monitoring.md lists every metric)",
                "content": {_PROMETHEUS_TEXT: {"schema": {"type": "string"}}},
            }
        }
    )
    def get(self) -> Response:
        """Every metric of this server's processes (summed over gunicorn workers), for Prometheus."""
        return Response(_monitoring().exposition(), mimetype=None, content_type=_PROMETHEUS_TEXT)


class OutcomeSchema(ma.Schema):
    hit = ma.fields.Integer()
    miss = ma.fields.Integer()
    bypass = ma.fields.Integer()
    reads = ma.fields.Integer()
    hit_ratio = ma.fields.Float(allow_none=True, metadata={"description": "hits / reads; null without reads"})


class RequestsSchema(ma.Schema):
    all = ma.fields.Nested(OutcomeSchema)
    kinds = ma.fields.Dict(
        keys=ma.fields.String(), values=ma.fields.Nested(OutcomeSchema), metadata={"description": "per kind"}
    )


class ErrorsSchema(ma.Schema):
    redis_calls = ma.fields.Integer(metadata={"description": "cache backend calls to Redis that failed"})
    cache_writes = ma.fields.Integer(metadata={"description": "cache writes that failed after the database commit"})
    breaker_opens = ma.fields.Integer(metadata={"description": "times a Redis circuit breaker opened"})


class CacheStatsSchema(ma.Schema):
    requests = ma.fields.Nested(
        RequestsSchema, metadata={"description": "cached reads by outcome since the server started, per kind"}
    )
    db_queries_saved = ma.fields.Dict(
        metadata={"description": "estimated, measured, read_commands_per_database_read, database_reads, db_queries"}
    )
    errors = ma.fields.Nested(ErrorsSchema, metadata={"description": "since the server started"})
    breaker = ma.fields.String(metadata={"description": "closed, open, half_open or disabled (this process)"})
    breaker_open_anywhere = ma.fields.Boolean(
        metadata={"description": "a breaker of any live process of this server is open or half-open"}
    )
    redis = ma.fields.Dict(allow_none=True, metadata={"description": "up, memory, maxmemory, evictions, clients"})
    pending_repairs = ma.fields.Integer(allow_none=True)
    last_audit = ma.fields.Dict(allow_none=True)
    last_warm = ma.fields.Dict(allow_none=True)
    jobs = ma.fields.Dict(metadata={"description": "each job's last run, outcome, success and report"})


@stats_blp.route("/cache/stats")
class CacheStats(MethodView):
    @require_token
    @stats_blp.response(200, CacheStatsSchema)
    @errors(stats_blp, 401)
    @stats_blp.doc(security=[{"bearerAuth": []}])
    def get(self) -> dict[str, Any]:
        """Reads by outcome, queries saved and errors since the server started (summed over its workers); state now."""
        stats: dict[str, Any] = _monitoring().cache_stats(current_services())
        return stats
