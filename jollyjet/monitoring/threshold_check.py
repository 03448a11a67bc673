"""The threshold job: the alerts' thresholds judged from the app's own figures, one log line per breach.

For deployments without Prometheus. Runs in the worker every JOLLYJET_THRESHOLDS_INTERVAL_S.
Hit ratio and cached-read p99 come from the totals the web servers publish in Redis
(web_totals.py), over the last 10 minutes (the alerts' window): the job keeps the
samples of its recent runs in its own report. Redis, the breaker, the repair backlog,
the last audit and the other jobs are read directly.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from pymongo.errors import PyMongoError

from jollyjet.cache.breaker import BreakerState
from jollyjet.maintenance.audit_store import latest_audit
from jollyjet.monitoring.history import Totals, read_totals
from jollyjet.monitoring.job_status import JobStatus, all_statuses
from jollyjet.monitoring.live import scheduled_intervals
from jollyjet.monitoring.redis_probe import RedisFigures, RedisProbe
from jollyjet.monitoring.thresholds import Breach, Figures, evaluate, quantile
from jollyjet.monitoring.web_totals import published_totals
from jollyjet.services import Services
from jollyjet.settings import Settings

log = logging.getLogger("jollyjet.thresholds")
WINDOW_S = 600  # the alerts' 10 minutes
TASK = "thresholds"


def _current_totals(services: Services, probe: RedisProbe | None) -> Totals | None:
    if probe is None:
        # Embedded mode: the worker is a thread of the web process and sees its totals.
        return Totals.from_json(read_totals().as_json(time.time()))
    try:
        return published_totals(probe.client, services.require_cache().keys)
    except (redis.RedisError, OSError):
        return None


def _window(samples: list[Totals], now: Totals) -> Totals | None:
    """now minus the newest sample at least WINDOW_S old (else the oldest); None without one, or after a reset."""
    older = [s for s in samples if s.at < now.at]
    if not older:
        return None
    base = older[0]
    for sample in older:
        if now.at - sample.at >= WINDOW_S:
            base = sample
    delta = now.minus(base)
    return None if delta.reads < 0 else delta  # a web restart reset the totals: judge next time


def _statuses() -> dict[str, JobStatus]:
    try:
        return all_statuses()
    except PyMongoError:
        return {}


def check_thresholds(services: Services, probe: RedisProbe | None) -> dict[str, Any]:
    """Judge every threshold, log each breach (WARNING, or ERROR when critical), return the report."""
    started = time.monotonic()
    cache = services.require_cache()
    statuses = _statuses()
    previous = statuses[TASK].last_report if TASK in statuses else {}
    samples = [Totals.from_json(s) for s in previous.get("samples", [])]
    now = _current_totals(services, probe)
    window = _window(samples, now) if now is not None else None
    redis_figures = probe.sample() if probe is not None else None
    before: RedisFigures | None = None
    if previous.get("redis"):
        before = RedisFigures(up=True, evicted_keys=int(previous["redis"].get("evicted_keys", 0)))
    audit = latest_audit()
    backlog = cache.repairs.pending_count()
    figures = Figures(
        reads=window.reads if window else None,
        hits=window.hits if window else None,
        cached_p99_s=quantile(0.99, window.hit_latency) if window else None,
        redis=redis_figures,
        breaker_open=cache.breaker.state is BreakerState.OPEN,
        evictions_in_window=_evictions(redis_figures, before),
        repair_backlog=backlog,
        repair_backlog_before=previous.get("repair_backlog"),
        last_audit_drift=audit.as_dict()["drift_total"] if audit is not None else None,
        job_failures=[t for t, s in statuses.items() if s.last_outcome == "failure" and t != TASK],
        job_last_success={t: s.last_success_at for t, s in statuses.items()},
        job_intervals={t: i for t, i in scheduled_intervals(services.settings).items() if t != TASK},
        now=datetime.now(UTC),
    )
    breaches = evaluate(figures, services.settings)
    for breach in breaches:
        _log(breach)
    kept = [s for s in samples if now is None or now.at - s.at <= WINDOW_S + services.settings.thresholds_interval_s]
    return {
        "breaches": [b.as_dict() for b in breaches],
        "judged_reads": figures.reads,
        "redis": redis_figures.as_dict() if redis_figures is not None else None,
        "repair_backlog": backlog,
        "samples": [s.as_json(s.at) for s in kept] + ([now.as_json(now.at)] if now is not None else []),
        "duration_s": round(time.monotonic() - started, 4),
    }


def _evictions(now: RedisFigures | None, before: RedisFigures | None) -> float | None:
    if now is None or not now.up or before is None:
        return None
    return max(0, now.evicted_keys - before.evicted_keys)


def _log(breach: Breach) -> None:
    level = logging.ERROR if breach.severity == "critical" else logging.WARNING
    log.log(
        level,
        "threshold breached: %s: %s",
        breach.alert,
        breach.summary,
        extra={"alert": breach.alert, "severity": breach.severity, "value": breach.value,
               "threshold": breach.threshold},
    )  # fmt: skip


@dataclass
class ThresholdReport:
    """One threshold run (a JobReport): the breaches and what the next run compares with."""

    body: dict[str, Any]
    duration_s: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the task's result, stored as the job's last report."""
        return self.body


def run_thresholds(services: Services, settings: Settings) -> ThresholdReport:
    """The job's entry point: judge with a Redis probe of its own (short timeouts), then close it."""
    probe = RedisProbe.for_settings(settings)
    try:
        body = check_thresholds(services, probe)
        return ThresholdReport(body, body["duration_s"])
    finally:
        if probe is not None:
            probe.client.close()
