"""GET /metrics (Prometheus text) and GET /api/v1/cache/stats (the same figures, for people)."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import Response, current_app
from flask.views import MethodView
from flask_smorest import Blueprint

from jollyjet.auth import require_token
from jollyjet.monitoring.setup import Monitoring, monitoring_of
from jollyjet.openapi_contract import errors
from jollyjet.request_parsing import ApiBlueprint
from jollyjet.services import current_services

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


class WindowSchema(ma.Schema):
    covered_s = ma.fields.Float(
        allow_none=True,
        metadata={"description": "seconds the window covers (less while the server is younger); null: since start"},
    )
    all = ma.fields.Nested(OutcomeSchema)
    kinds = ma.fields.Dict(
        keys=ma.fields.String(), values=ma.fields.Nested(OutcomeSchema), metadata={"description": "per kind"}
    )


class BreachSchema(ma.Schema):
    alert = ma.fields.String(metadata={"description": "the alert of deploy/prometheus/alerts.yml it matches"})
    severity = ma.fields.String()
    summary = ma.fields.String()
    value = ma.fields.Float(allow_none=True)
    threshold = ma.fields.Float(allow_none=True)


class CacheStatsSchema(ma.Schema):
    requests = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.Nested(WindowSchema),
        metadata={"description": "since_start, 1m, 5m, 15m: cached reads by outcome, per kind"},
    )
    db_queries_saved = ma.fields.Dict(
        metadata={"description": "estimated, measured, read_commands_per_database_read, database_reads, db_queries"}
    )
    redis = ma.fields.Dict(allow_none=True, metadata={"description": "up, memory, maxmemory, evictions, clients"})
    breaker = ma.fields.String(metadata={"description": "closed, open, half_open or disabled (this process)"})
    pending_repairs = ma.fields.Integer(allow_none=True)
    last_audit = ma.fields.Dict(allow_none=True)
    last_warm = ma.fields.Dict(allow_none=True)
    jobs = ma.fields.Dict(metadata={"description": "each job's last run, outcome, success and report"})
    thresholds_breached = ma.fields.List(ma.fields.Nested(BreachSchema))


@stats_blp.route("/cache/stats")
class CacheStats(MethodView):
    @require_token
    @stats_blp.response(200, CacheStatsSchema)
    @errors(stats_blp, 401)
    @stats_blp.doc(security=[{"bearerAuth": []}])
    def get(self) -> dict[str, Any]:
        """Cache hit ratios (since start, 1, 5 and 15 minutes), queries saved, Redis, jobs, thresholds breached."""
        stats: dict[str, Any] = _monitoring().cache_stats(current_services())
        return stats
