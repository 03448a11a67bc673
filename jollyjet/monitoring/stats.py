"""The figures of GET /api/v1/cache/stats: counts and ratios, queries saved, Redis, breaker, jobs, breaches."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from pymongo.errors import PyMongoError

from jollyjet.maintenance.audit_store import latest_audit
from jollyjet.monitoring.history import HISTORY, Totals, read_totals
from jollyjet.monitoring.job_status import all_statuses
from jollyjet.monitoring.live import scheduled_intervals
from jollyjet.monitoring.metrics import CACHE_KINDS, CACHE_RESULTS
from jollyjet.monitoring.redis_probe import RedisFigures, RedisProbe
from jollyjet.monitoring.thresholds import Figures, evaluate, quantile
from jollyjet.services import Services

log = logging.getLogger(__name__)
WINDOWS = {"1m": 60, "5m": 300, "15m": 900}
JUDGED_WINDOW_S = 600  # the alerts' 10 minutes
# MongoDB commands one database read of each kind costs (mongo_repository.py): a list
# page is a find plus a count, the others one command each.
QUERIES_PER_READ = {"product": 1, "list": 2, "count": 1, "categories": 1}
READ_COMMANDS = ("find", "count", "aggregate", "getMore", "distinct")


def outcome_counts(totals: Totals) -> dict[str, Any]:
    """hit/miss/bypass and hit ratio per kind and over all kinds."""
    kinds: dict[str, Any] = {}
    for kind in CACHE_KINDS:
        kinds[kind] = _ratio({r: totals.requests.get((kind, r), 0.0) for r in CACHE_RESULTS})
    overall = {r: sum(totals.requests.get((k, r), 0.0) for k in CACHE_KINDS) for r in CACHE_RESULTS}
    return {"all": _ratio(overall), "kinds": kinds}


def _ratio(counts: dict[str, float]) -> dict[str, Any]:
    reads = sum(counts.values())
    return {**{r: int(n) for r, n in counts.items()}, "reads": int(reads),
            "hit_ratio": round(counts["hit"] / reads, 4) if reads else None}  # fmt: skip


def queries_saved(totals: Totals) -> dict[str, Any]:
    """Estimated (hits times a read's query cost) and measured (hits times read commands per database read)."""
    hits = {k: totals.requests.get((k, "hit"), 0.0) for k in CACHE_KINDS}
    estimated = sum(hits[k] * QUERIES_PER_READ[k] for k in CACHE_KINDS)
    db_reads = sum(totals.db_reads.values())
    read_commands = sum(totals.db_queries.get(c, 0.0) for c in READ_COMMANDS)
    per_read = read_commands / db_reads if db_reads else None
    return {
        "estimated": int(estimated),
        "measured": None if per_read is None else round(sum(hits.values()) * per_read),
        "read_commands_per_database_read": None if per_read is None else round(per_read, 3),
        "database_reads": int(db_reads),
        "db_queries": {op: int(n) for op, n in sorted(totals.db_queries.items())},
    }


def _jobs() -> tuple[dict[str, Any], dict[str, Any]]:
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


def cache_stats(services: Services, probe: RedisProbe | None) -> dict[str, Any]:
    """The whole statistics document."""
    HISTORY.start()
    now = read_totals()
    windows: dict[str, Any] = {"since_start": {"covered_s": None, **outcome_counts(now)}}
    for name, seconds in WINDOWS.items():
        delta, covered = HISTORY.window(now, seconds)
        windows[name] = {"covered_s": covered, **outcome_counts(delta)}
    judged, _ = HISTORY.window(now, JUDGED_WINDOW_S)
    redis = probe.sample() if probe is not None else None
    jobs, audit = _jobs()
    backlog = _pending_repairs(services)
    breaker = services.cache.breaker.state.value if services.cache else "disabled"
    figures = Figures(
        reads=sum(judged.requests.values()),
        hits=sum(n for (_, r), n in judged.requests.items() if r == "hit"),
        cached_p99_s=quantile(0.99, judged.hit_latency),
        redis=redis,
        breaker_open=breaker == "open",
        repair_backlog=backlog,
        last_audit_drift=audit.get("drift_total"),
        job_failures=[t for t, j in jobs.items() if j["last_outcome"] == "failure"],
        job_last_success={t: _parse(j["last_success_at"]) for t, j in jobs.items()},
        job_intervals=scheduled_intervals(services.settings),
        now=datetime.now(UTC),
    )
    return {
        "requests": windows,
        "db_queries_saved": queries_saved(now),
        "redis": _redis(redis),
        "breaker": breaker,
        "pending_repairs": backlog,
        "last_audit": audit or None,
        "last_warm": (jobs.get("warm") or {}).get("last_report") or None,
        "jobs": jobs,
        "thresholds_breached": [b.as_dict() for b in evaluate(figures, services.settings)],
    }


def _redis(figures: RedisFigures | None) -> dict[str, Any] | None:
    return figures.as_dict() if figures is not None else None


def _parse(stamp: str | None) -> datetime | None:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")) if stamp else None
