"""Monitoring, wired in where the parts are built: the sinks by app_factory.build_services, the
MongoDB listener by create_app's connect step, the rest by attach_monitoring (one app step).

This module imports prometheus_client only inside these functions, which run when an
app or its services are built (see the package docstring).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import Flask
from pymongo.errors import PyMongoError
from pymongo.monitoring import CommandListener

from jollyjet.cache.events import CacheEvents
from jollyjet.cache.redis_backend import CallObserver
from jollyjet.maintenance.audit_store import latest_audit
from jollyjet.monitoring.job_status import all_statuses
from jollyjet.monitoring.redis_probe import RedisProbe
from jollyjet.settings import Settings

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from jollyjet.extensions import Services

EXTENSION = "jollyjet_monitoring"
log = logging.getLogger(__name__)


@dataclass
class Monitoring:
    """One app's monitoring parts; monitoring_of(app)."""

    settings: Settings
    probe: RedisProbe | None = None  # a real Redis's INFO (None: no Redis URL, or the cache is off)
    live: CollectorRegistry | None = field(default=None)

    def exposition(self) -> bytes:
        """The Prometheus text for a scrape of this process group."""
        from jollyjet.monitoring.exposition import live_registry, render

        return render(self.live if self.live is not None else live_registry(None))

    def cache_stats(self, services: Services) -> dict[str, Any]:
        """The GET /api/v1/cache/stats document: the registry /metrics reads (since start), and the state now."""
        from jollyjet.monitoring.exposition import Recorded, since_start

        recorded = Recorded.now()
        jobs, audit = _jobs()
        return {
            **since_start(recorded),
            "breaker": services.cache.breaker.state.value if services.cache is not None else "disabled",
            # The gauge is the max over the server's live processes: any worker's breaker, not only this one's.
            "breaker_open_anywhere": recorded.total("jollyjet_cache_breaker_open") > 0,
            "redis": self.probe.sample().as_dict() if self.probe is not None else None,
            "pending_repairs": _pending_repairs(services),
            "last_audit": audit or None,
            "last_warm": (jobs.get("warm") or {}).get("last_report") or None,
            "jobs": jobs,
        }


def _jobs() -> tuple[dict[str, Any], dict[str, Any]]:
    """Each job's status and the last audit, from MongoDB (empty while it is down: the figures still answer)."""
    try:
        statuses = all_statuses()
        audit = latest_audit()
    except PyMongoError as error:
        log.warning("cache stats: MongoDB unavailable for job status: %s", type(error).__name__)
        return {}, {}
    jobs = {task: status.as_dict() for task, status in sorted(statuses.items())}
    return jobs, (audit.as_dict() if audit is not None else {})


def _pending_repairs(services: Services) -> int | None:
    if services.cache is None:
        return None
    try:
        return services.cache.repairs.pending_count()
    except PyMongoError:
        return None


def monitoring_of(app: Flask) -> Monitoring:
    """The monitoring parts an app was built with."""
    monitoring: Monitoring = app.extensions[EXTENSION]
    return monitoring


def _no_created_series() -> None:
    from prometheus_client import disable_created_metrics

    # `_created` series double the exposition and nothing here reads them.
    disable_created_metrics()


def metric_sinks() -> list[CacheEvents]:
    """The cache-event sinks of the metrics (the services' events are handed to them too)."""
    from jollyjet.monitoring.cache_sink import PrometheusEvents

    _no_created_series()
    return [PrometheusEvents()]


def redis_observer() -> CallObserver:
    """Times every Redis call of the cache backend."""
    from jollyjet.monitoring.metrics import REDIS_DURATION, children_of

    duration = children_of(REDIS_DURATION)

    def observe(operation: str, seconds: float, ok: bool) -> None:
        duration(operation, "ok" if ok else "error").observe(seconds)

    return observe


SHED_REASONS = ("bulkhead", "search", "deep_pages", "auth_failures")


def shed_counter() -> Callable[[str], None]:
    """Counts one refused request by its reason (one of SHED_REASONS)."""
    from jollyjet.monitoring.metrics import REQUESTS_SHED, children_of

    _no_created_series()
    child = children_of(REQUESTS_SHED)
    for reason in SHED_REASONS:
        child(reason).inc(0)  # every reason's series exists from the start: rate() needs a zero
    return lambda reason: child(reason).inc()


def mongo_listeners() -> list[CommandListener]:
    """Listeners for the MongoDB client: every command it sends is counted."""
    from jollyjet.monitoring.mongo_commands import QueryCounter

    _no_created_series()
    return [QueryCounter()]


def attach_monitoring(app: Flask, settings: Settings, services: Services) -> Monitoring:
    """Request hooks, breaker listeners, scrape-time figures and job signals for this app."""
    from jollyjet.monitoring.exposition import live_registry
    from jollyjet.monitoring.job_signals import connect_job_signals
    from jollyjet.monitoring.live import LiveCollector
    from jollyjet.monitoring.metrics import BREAKER_OPEN, BREAKER_OPENS
    from jollyjet.monitoring.requests import register_request_hooks

    monitoring = Monitoring(settings)
    register_request_hooks(app)
    if services.cache is not None:
        BREAKER_OPEN.set(0)
        BREAKER_OPENS.inc(0)
        services.cache.breaker.on_open.extend([lambda: BREAKER_OPEN.set(1), BREAKER_OPENS.inc])
        services.cache.breaker.on_recover.append(lambda: BREAKER_OPEN.set(0))
    # Embedded fakeredis has no INFO: figures only for a real Redis.
    monitoring.probe = RedisProbe.for_settings(settings) if services.cache is not None else None
    repairs = services.cache.repairs if services.cache is not None else None
    monitoring.live = live_registry(LiveCollector(settings, monitoring.probe, repairs))
    connect_job_signals()
    app.extensions[EXTENSION] = monitoring
    return monitoring
