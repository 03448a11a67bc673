"""Metrics are exact across processes: gunicorn's two workers and the Celery worker's pool.

Every request goes over a fresh connection, so either web process accepts it, and
every scrape, whichever process answers, must report the whole group's counts; so
must GET /api/v1/cache/stats, which reads the same registry.
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest

from tests.support.factories import product_payload
from tests.support.monitored_stack import AUTH, MonitoredStack, monitored_stack, scrape, value

pytestmark = [pytest.mark.e2e, pytest.mark.monitoring]

N = 60
MAX_SCRAPES = 400  # bound on scraping until both workers have answered
SCRAPES = 8
PRODUCT_ROUTE = "/api/v1/products/<product_id:product_id>"
STATS = "/api/v1/cache/stats"
BOOTED = re.compile(r"Booting worker with pid: \d+")
_ACCESS_LINE = re.compile(r'^pid=<(\d+)> "GET (\S+) HTTP/[0-9.]+" (\d{3})$', re.MULTILINE)


def pids_serving(stack: MonitoredStack, path: str) -> set[str]:
    """gunicorn worker pids whose access log shows a 200 for GET path."""
    lines = _ACCESS_LINE.findall(stack.processes["web"].log_text())
    return {pid for pid, logged, status in lines if logged == path and status == "200"}


@pytest.fixture
def web(tmp_path: Path) -> MonitoredStack:
    with monitored_stack(tmp_path, ["web", "worker"]) as stack:
        yield stack  # type: ignore[misc]


def test_every_scrape_reports_exactly_the_requests_all_workers_served(web: MonitoredStack) -> None:
    created = web.post("/api/v1/products", json=product_payload(category="mon"))
    assert created.status_code == 201, created.text
    path = f"/api/v1/products/{created.json()['id']}"
    for _ in range(N):
        response = web.get(path)
        assert response.status_code == 200 and response.headers["X-Cache"] == "HIT"
    assert len(pids_serving(web, path)) == 2, "both gunicorn workers should have served reads"

    # Which worker accepts a fresh connection is the kernel's choice: on an idle machine one
    # worker can win many in a row. Scrape at least SCRAPES times, and on (bounded) until
    # both workers have answered; every scrape must report exactly N.
    scrapes = 0
    while scrapes < SCRAPES or (len(pids_serving(web, "/metrics")) < 2 and scrapes < MAX_SCRAPES):
        samples = scrape(web.url + "/metrics")
        scrapes += 1
        duration = {"method": "GET", "route": PRODUCT_ROUTE, "status": "200", "cache": "hit"}
        assert value(samples, "jollyjet_http_request_duration_seconds_count", **duration) == N
        assert value(samples, "jollyjet_cache_requests_total", kind="product", result="hit") == N
        assert value(samples, "jollyjet_cache_requests_total", kind="product", result="miss") == 0
        assert value(samples, "jollyjet_cache_db_reads_total", kind="product") == 0
        # The one product ever written: one insert, whichever worker took the POST.
        assert value(samples, "jollyjet_db_queries_total", operation="insert") == 1
        assert value(samples, "jollyjet_cache_breaker_open") == 0
    assert len(pids_serving(web, "/metrics")) == 2, f"both gunicorn workers should have answered {scrapes} scrapes"

    # The statistics endpoint sums the same files: the two workers' reads add up whichever answers.
    asked = 0
    while asked < SCRAPES or (len(pids_serving(web, STATS)) < 2 and asked < MAX_SCRAPES):
        stats = web.get(STATS, headers=AUTH)
        asked += 1
        assert stats.status_code == 200, stats.text
        product = stats.json()["requests"]["kinds"]["product"]
        assert (product["hit"], product["miss"], product["bypass"]) == (N, 0, 0)
        assert stats.json()["db_queries_saved"]["db_queries"]["insert"] == 1
        assert stats.json()["breaker_open_anywhere"] is False
    assert len(pids_serving(web, STATS)) == 2, f"both gunicorn workers should have answered {asked} stats requests"

    # A worker dies; gunicorn replaces it (child_exit marks it dead). Its counts stay counted.
    victim = int(sorted(pids_serving(web, path))[0])
    os.kill(victim, signal.SIGKILL)
    web.wait_for(lambda: len(BOOTED.findall(web.processes["web"].log_text())) == 3, "a replacement gunicorn worker")
    for _ in range(SCRAPES):
        samples = scrape(web.url + "/metrics")
        assert value(samples, "jollyjet_cache_requests_total", kind="product", result="hit") == N
        assert value(samples, "jollyjet_cache_breaker_open") == 0
        assert web.get(STATS, headers=AUTH).json()["requests"]["kinds"]["product"]["hit"] == N


def test_the_celery_worker_exports_the_runs_of_all_its_pool_processes(web: MonitoredStack) -> None:
    runs = 4
    for _ in range(runs):
        assert web.post("/api/v1/cache/audit").status_code == 202

    def all_counted() -> dict | None:  # type: ignore[type-arg]
        try:
            samples = scrape(web.worker_metrics_url)
        except OSError:
            return None  # not listening yet
        # Two pool processes: a run that starts while the other holds the job's lock is skipped.
        done = sum(value(samples, "jollyjet_job_runs_total", task="audit", outcome=o) for o in ("success", "skipped"))
        return samples if done == runs else None

    samples = web.wait_for(all_counted, f"{runs} audit runs in the worker's metrics")
    assert value(samples, "jollyjet_job_runs_total", task="audit", outcome="success") >= 1
    assert value(samples, "jollyjet_job_runs_total", task="audit", outcome="failure") == 0
    assert value(samples, "jollyjet_audit_drift_found_total", drift_class="stale_version") == 0
    # The audits read MongoDB from the pool processes: their commands are counted too.
    assert sum(v for (name, _), v in samples.items() if name == "jollyjet_db_queries_total") > 0
    # The web reads the job status the worker stored.
    web_samples = scrape(web.url + "/metrics")
    assert value(web_samples, "jollyjet_job_last_success_timestamp_seconds", task="audit") > 0
    assert web.get("/api/v1/cache/stats").status_code == 401
    stats = web.get("/api/v1/cache/stats", headers=AUTH)
    assert stats.status_code == 200, stats.text
    body = stats.json()
    assert body["last_audit"]["drift_total"] == 0 and body["jobs"]["audit"]["last_outcome"] in ("success", "skipped")
    assert body["breaker"] == "closed" and body["pending_repairs"] == 0
    assert set(body["redis"]) >= {"up", "used_memory_bytes", "maxmemory_bytes", "evicted_keys", "connected_clients"}
