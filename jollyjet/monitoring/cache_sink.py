"""The Prometheus sink of cache events (jollyjet/cache/events.py)."""

from __future__ import annotations

from jollyjet.monitoring.metrics import (
    CACHE_DB_READS,
    CACHE_KINDS,
    CACHE_REQUESTS,
    CACHE_RESULTS,
    FENCED_READS,
    GUARD_REFUSALS,
    WRITE_FAILURES,
    children_of,
)

# Read outcomes → the result label; a read that waited for another request's fill is a hit.
_RESULTS = {"hit": "hit", "wait_hit": "hit", "miss": "miss", "bypass": "bypass"}
_REFUSALS = {"fill_rejected": "fill", "write_refused": "write"}
_REQUESTS = children_of(CACHE_REQUESTS)


class PrometheusEvents:
    """CacheEvents → counters. Cheap (a dict lookup and an increment) and never raises."""

    def __init__(self) -> None:
        # Every series exists from the start, at 0: rate() and ratios need no special case
        # for "nothing happened yet", and dashboards show 0 rather than "no data".
        for kind in CACHE_KINDS:
            for result in CACHE_RESULTS:
                CACHE_REQUESTS.labels(kind, result)
            CACHE_DB_READS.labels(kind)
            FENCED_READS.labels(kind)
        for operation in _REFUSALS.values():
            GUARD_REFUSALS.labels("product", operation)
        WRITE_FAILURES.labels("product")

    def emit(self, event: str, kind: str) -> None:
        """Count one event."""
        result = _RESULTS.get(event)
        if result is not None:
            _REQUESTS(kind, result).inc()
        elif event == "db_read":
            CACHE_DB_READS.labels(kind).inc()
        elif event in _REFUSALS:
            GUARD_REFUSALS.labels(kind, _REFUSALS[event]).inc()
        elif event == "write_failure":
            WRITE_FAILURES.labels(kind).inc()
        elif event == "fenced":  # also counted as a bypass: this says which bypasses the fence made
            FENCED_READS.labels(kind).inc()
