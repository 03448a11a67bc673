"""The alert thresholds judged by the app itself: the pure rules, and the threshold job's log lines."""

from __future__ import annotations

import logging
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask

from jollyjet import create_app
from jollyjet.cache.events import EventCounter
from jollyjet.monitoring.job_status import record_run
from jollyjet.monitoring.redis_probe import RedisFigures, RedisProbe
from jollyjet.monitoring.threshold_check import check_thresholds
from jollyjet.monitoring.thresholds import Figures, evaluate, quantile
from jollyjet.services import services_of
from tests.conftest import TOKEN, make_app, make_settings
from tests.support.factories import product_payload
from tests.support.fake_cache import FakeCacheBackend

SETTINGS = make_settings()
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def alerts(figures: Figures) -> list[str]:
    return [b.alert for b in evaluate(figures, SETTINGS)]


def test_healthy_figures_breach_nothing() -> None:
    healthy = Figures(
        reads=1000, hits=950, cached_p99_s=0.004, redis=RedisFigures(True, 10, 100), breaker_open=False,
        evictions_in_window=0, repair_backlog=0, repair_backlog_before=0, last_audit_drift=0,
        job_last_success={"audit": NOW - timedelta(minutes=10)}, job_intervals={"audit": 900}, now=NOW,
    )  # fmt: skip
    assert alerts(healthy) == []
    assert alerts(Figures()) == []  # nothing known, nothing claimed


@pytest.mark.parametrize(
    ("figures", "expected"),
    [
        (Figures(reads=1000, hits=700), ["JollyJetCacheHitRatioLow"]),
        (Figures(reads=50, hits=10), []),  # too few reads to judge (JOLLYJET_ALERT_MIN_READS)
        (Figures(cached_p99_s=0.25), ["JollyJetCachedReadsSlow"]),
        (Figures(redis=RedisFigures(up=False)), ["JollyJetRedisDown"]),
        (Figures(breaker_open=True), ["JollyJetCacheBreakerOpen"]),
        (Figures(redis=RedisFigures(True, used_memory=90, maxmemory=100)), ["JollyJetRedisMemoryHigh"]),
        (Figures(redis=RedisFigures(True, used_memory=90, maxmemory=0)), []),  # no limit set
        (Figures(evictions_in_window=3), ["JollyJetRedisEvicting"]),
        (Figures(last_audit_drift=2), ["JollyJetCacheDrift"]),
        (Figures(repair_backlog=9, repair_backlog_before=4), ["JollyJetRepairBacklogGrowing"]),
        (Figures(repair_backlog=4, repair_backlog_before=9), []),
        (Figures(job_failures=["warm"]), ["JollyJetJobFailing"]),
        (Figures(job_last_success={"audit": NOW - timedelta(hours=1)}, job_intervals={"audit": 900}, now=NOW),
         ["JollyJetJobOverdue"]),
        (Figures(job_last_success={"audit": None}, job_intervals={"audit": 900}, now=NOW), []),
    ],
)  # fmt: skip
def test_each_threshold_breaches_on_its_own(figures: Figures, expected: list[str]) -> None:
    assert alerts(figures) == expected


def test_critical_breaches_come_first() -> None:
    both = evaluate(Figures(last_audit_drift=1, redis=RedisFigures(up=False)), SETTINGS)
    assert [(b.alert, b.severity) for b in both] == [
        ("JollyJetRedisDown", "critical"),
        ("JollyJetCacheDrift", "warning"),
    ]


def test_quantile_interpolates_within_buckets_as_prometheus_does() -> None:
    buckets = {0.05: 50.0, 0.1: 50.0, 0.25: 100.0, float("inf"): 100.0}
    assert quantile(0.99, buckets) == pytest.approx(0.247)  # what promtool's test saw for the same buckets
    assert quantile(0.5, buckets) == pytest.approx(0.05)
    assert quantile(0.99, {0.1: 0.0, float("inf"): 0.0}) is None
    assert quantile(0.99, {0.1: 10.0, float("inf"): 20.0}) == 0.1  # in +Inf: the highest finite bound


@pytest.fixture
def app() -> Flask:
    # Low traffic threshold so a few reads are judged; no Redis URL: the job reads this process's totals.
    settings = make_settings(alert_min_reads=5, log_level="INFO")
    return make_app(settings, cache_backend=FakeCacheBackend(), events=EventCounter())


def test_the_job_logs_a_warning_per_breach_over_the_reads_since_its_last_sample(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    client = app.test_client()
    services = services_of(app)
    with app.app_context():
        first = check_thresholds(services, probe=None)
    record_run("thresholds", "success", first)
    assert first["judged_reads"] is None  # no earlier sample: nothing to judge the ratio on yet
    # Ten list queries, each new: ten misses, a hit ratio of 0.
    for page in range(1, 11):
        client.get(f"/api/v1/products?page={page}")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="jollyjet.thresholds"), app.app_context():
        second = check_thresholds(services, probe=None)
    assert second["judged_reads"] == 10
    assert [b["alert"] for b in second["breaches"]] == ["JollyJetCacheHitRatioLow"]
    [record] = [r for r in caplog.records if r.name == "jollyjet.thresholds"]
    assert record.levelno == logging.WARNING and record.alert == "JollyJetCacheHitRatioLow"  # type: ignore[attr-defined]
    assert record.value == 0.0 and record.threshold == 0.8  # type: ignore[attr-defined]


def test_the_job_logs_an_error_for_a_critical_breach(caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(make_settings(redis_url="redis://127.0.0.1:1/0", breaker_failure_threshold=1))
    services = services_of(app)
    app.test_client().post("/api/v1/products", json=product_payload(), headers={"Authorization": f"Bearer {TOKEN}"})
    probe = RedisProbe.for_url("redis://127.0.0.1:1/0")
    with caplog.at_level(logging.WARNING, logger="jollyjet.thresholds"), app.app_context():
        report = check_thresholds(services, probe)
    breached = {b["alert"]: b["severity"] for b in report["breaches"]}
    assert breached["JollyJetRedisDown"] == "critical" and breached["JollyJetCacheBreakerOpen"] == "critical"
    errors = [r for r in caplog.records if r.name == "jollyjet.thresholds" and r.levelno == logging.ERROR]
    assert {r.alert for r in errors} == {"JollyJetRedisDown", "JollyJetCacheBreakerOpen"}  # type: ignore[attr-defined]


def test_importing_the_service_does_not_import_prometheus_client() -> None:
    # prometheus-client picks in-memory or multiprocess values when it is first imported;
    # gunicorn.conf.py and tasks.app choose the directory first (jollyjet/monitoring/__init__.py).
    code = (
        "import sys; import jollyjet, jollyjet.app_factory, jollyjet.wiring, jollyjet.db, tasks; "
        "sys.exit(1 if 'prometheus_client' in sys.modules else 0)"
    )  # fmt: skip
    root = Path(__file__).resolve().parents[2]
    assert subprocess.run([sys.executable, "-c", code], cwd=root, check=False).returncode == 0
