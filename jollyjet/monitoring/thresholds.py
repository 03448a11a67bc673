"""The alert thresholds of deploy/prometheus/alerts.yml, judged on the app's own figures.

Used by GET /api/v1/cache/stats ("thresholds breached") and by the threshold job,
for deployments without Prometheus. Pure functions: figures in, breaches out.
This module does not import prometheus_client.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from jollyjet.monitoring.redis_probe import RedisFigures
from jollyjet.monitoring_settings import MonitoringSettings


@dataclass(frozen=True)
class Breach:
    """One threshold crossed: the alert it corresponds to, how bad, and the figures."""

    alert: str
    severity: str  # warning or critical
    summary: str
    value: float | None = None
    threshold: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view."""
        return asdict(self)


@dataclass(frozen=True)
class Figures:
    """What the thresholds are judged on; None means "not known here" (never a breach)."""

    reads: float | None = None  # cached reads in the judged window
    hits: float | None = None
    cached_p99_s: float | None = None
    redis: RedisFigures | None = None
    breaker_open: bool | None = None
    evictions_in_window: float | None = None
    repair_backlog: int | None = None
    repair_backlog_before: int | None = None
    last_audit_drift: int | None = None
    job_failures: list[str] = field(default_factory=list)  # jobs whose last run failed
    job_last_success: dict[str, datetime | None] = field(default_factory=dict)
    job_intervals: dict[str, int] = field(default_factory=dict)
    now: datetime | None = None


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """histogram_quantile over cumulative bucket counts {le: count}, as Prometheus computes it."""
    ordered = sorted(buckets.items())
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    lower_le, lower_count = 0.0, 0.0
    for le, count in ordered:
        if count >= rank:
            if math.isinf(le):
                return lower_le  # in the +Inf bucket: the highest finite bound, as Prometheus does
            return lower_le + (le - lower_le) * ((rank - lower_count) / (count - lower_count or 1))
        lower_le, lower_count = le, count
    return None


def evaluate(figures: Figures, settings: MonitoringSettings) -> list[Breach]:
    """Every threshold the figures cross, most severe first."""
    found = [*_cache(figures, settings), *_redis(figures, settings), *_consistency(figures), *_jobs(figures)]
    return sorted(found, key=lambda b: b.severity != "critical")


def _cache(f: Figures, s: MonitoringSettings) -> list[Breach]:
    found = []
    if f.reads is not None and f.hits is not None and f.reads >= s.alert_min_reads:
        ratio = f.hits / f.reads
        if ratio < s.alert_hit_ratio_min:
            found.append(
                Breach("JollyJetCacheHitRatioLow", "warning", "cache hit ratio below its threshold", ratio,
                       s.alert_hit_ratio_min)
            )  # fmt: skip
    if f.cached_p99_s is not None and f.cached_p99_s > s.alert_cached_p99_s:
        found.append(
            Breach("JollyJetCachedReadsSlow", "warning", "p99 latency of cache hits above its threshold",
                   f.cached_p99_s, s.alert_cached_p99_s)
        )  # fmt: skip
    return found


def _redis(f: Figures, s: MonitoringSettings) -> list[Breach]:
    found = []
    if f.redis is not None and not f.redis.up:
        found.append(Breach("JollyJetRedisDown", "critical", "Redis does not answer"))
    if f.breaker_open:
        found.append(Breach("JollyJetCacheBreakerOpen", "critical", "the Redis circuit breaker is open"))
    ratio = f.redis.memory_ratio if f.redis is not None and f.redis.up else None
    if ratio is not None and ratio > s.alert_redis_memory_ratio_max:
        found.append(
            Breach("JollyJetRedisMemoryHigh", "warning", "Redis memory close to maxmemory", ratio,
                   s.alert_redis_memory_ratio_max)
        )  # fmt: skip
    if f.evictions_in_window:
        found.append(Breach("JollyJetRedisEvicting", "warning", "Redis is evicting keys", f.evictions_in_window, 0))
    return found


def _consistency(f: Figures) -> list[Breach]:
    found = []
    if f.last_audit_drift:
        found.append(Breach("JollyJetCacheDrift", "warning", "the last audit found drift", f.last_audit_drift, 0))
    before, now = f.repair_backlog_before, f.repair_backlog
    if before is not None and now is not None and now > before:
        found.append(Breach("JollyJetRepairBacklogGrowing", "warning", "failed cache writes pile up", now, before))
    return found


def _jobs(f: Figures) -> list[Breach]:
    found = [Breach("JollyJetJobFailing", "warning", f"the last {task} run failed") for task in sorted(f.job_failures)]
    if f.now is None:
        return found
    for task, interval in sorted(f.job_intervals.items()):
        last = f.job_last_success.get(task)
        if last is None:
            continue  # never succeeded: judged by Prometheus with `for:` (the app cannot tell a fresh deploy)
        age = (f.now - last).total_seconds()
        if age > 3 * interval:
            found.append(
                Breach("JollyJetJobOverdue", "warning", f"{task} has not succeeded for {round(age)} s", age,
                       3 * interval)
            )  # fmt: skip
    return found
