"""The Prometheus metrics of one process: names, labels and counts (the registry is process-wide: deltas)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from jollyjet import create_app
from jollyjet.ops.metrics import PrometheusEvents, request_id_from
from tests.conftest import TOKEN, make_settings
from tests.support.events import EventCounter
from tests.support.factories import product_payload

AUTH = {"Authorization": f"Bearer {TOKEN}"}
PRODUCT_ROUTE = "/api/v1/products/<product_id:product_id>"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Delta:
    """Sample values now, and how much they changed since."""

    def __init__(self, *series: tuple[str, dict[str, str]]) -> None:
        self.series = series
        self.before = [sample(n, **labels) for n, labels in series]

    def changes(self) -> list[float]:
        return [sample(n, **labels) - b for (n, labels), b in zip(self.series, self.before, strict=True)]


def requests_series(kind: str, result: str) -> tuple[str, dict[str, str]]:
    return ("jollyjet_cache_requests_total", {"kind": kind, "result": result})


def test_each_cached_read_counts_exactly_one_outcome(client: FlaskClient, events: EventCounter) -> None:
    product = client.post("/api/v1/products", json=product_payload(category="m1"), headers=AUTH).get_json()
    kinds = ("product", "list", "count", "categories")
    delta = Delta(*(requests_series(k, r) for k in kinds for r in ("hit", "miss", "bypass")))
    for _ in range(3):
        assert client.get(f"/api/v1/products/{product['id']}").headers["X-Cache"] == "HIT"
    for path in ("/api/v1/products?category=m1", "/api/v1/products/count?category=m1", "/api/v1/categories"):
        assert [client.get(path).headers["X-Cache"] for _ in range(2)] == ["MISS", "HIT"]
    #            product hit/miss/bypass, list, count, categories
    assert delta.changes() == [3, 0, 0, 1, 1, 0, 1, 1, 0, 1, 1, 0]
    # The EventCounter handed to create_app sees the same events.
    assert events.count("hit", "product") == 3 and events.count("miss", "list") == 1


def test_a_read_that_waited_for_another_fill_is_a_hit_and_refusals_and_failures_are_counted() -> None:
    sink = PrometheusEvents()
    delta = Delta(
        requests_series("list", "hit"),
        requests_series("list", "miss"),
        ("jollyjet_cache_guard_refusals_total", {"kind": "product", "operation": "fill"}),
        ("jollyjet_cache_guard_refusals_total", {"kind": "product", "operation": "write"}),
        ("jollyjet_cache_write_failures_total", {"kind": "product"}),
        ("jollyjet_cache_db_reads_total", {"kind": "list"}),
        ("jollyjet_cache_fenced_reads_total", {"kind": "count"}),
    )
    for event, kind in [("wait_hit", "list"), ("fill_rejected", "product"), ("write_refused", "product"),
                        ("write_failure", "product"), ("db_read", "list"), ("fill", "list"),
                        ("fenced", "count")]:  # fmt: skip
        sink.emit(event, kind)
    assert delta.changes() == [1, 0, 1, 1, 1, 1, 1]


@pytest.fixture
def unreachable_redis_app(monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    # A Redis URL nobody listens on: the real backend, breaker and probe, all failing fast.
    monkeypatch.setattr("jollyjet.app_factory.BREAKER_FAILURES", 2)
    yield create_app(make_settings(redis_url="redis://127.0.0.1:1/0"))


def redis_errors() -> float:
    """Failed Redis calls, over every operation."""
    return sum(
        s.value
        for family in REGISTRY.collect()
        for s in family.samples
        if s.name == "jollyjet_redis_command_duration_seconds_count" and s.labels["result"] == "error"
    )


def test_a_dead_redis_shows_as_bypasses_redis_errors_an_open_breaker_and_redis_down(
    unreachable_redis_app: Flask,
) -> None:
    client = unreachable_redis_app.test_client()
    delta = Delta(requests_series("list", "bypass"), ("jollyjet_cache_breaker_opens_total", {}))
    errors_before = redis_errors()
    for _ in range(3):
        assert client.get("/api/v1/products").headers["X-Cache"] == "BYPASS"
    assert delta.changes() == [3, 1]
    # Two failed calls (whichever operations: reads, or the sampled popularity count) opened
    # the breaker; after that no call reached Redis.
    assert redis_errors() - errors_before == 2
    assert sample("jollyjet_cache_breaker_open") == 1
    text = client.get("/metrics").get_data(as_text=True)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["jollyjet_redis_up"].samples[0].value == 0
    assert "jollyjet_redis_memory_used_bytes" not in families  # no figures from a Redis that did not answer
    stats = client.get("/api/v1/cache/stats", headers=AUTH).get_json()
    assert stats["breaker"] == "open" and stats["breaker_open_anywhere"] is True and stats["redis"]["up"] is False
    # The statistics read the registry /metrics reads: the same failed calls and opening.
    assert stats["errors"]["redis_calls"] == redis_errors() and stats["errors"]["breaker_opens"] == sample(
        "jollyjet_cache_breaker_opens_total"
    )


def test_latency_is_labelled_by_url_rule_status_and_cache_outcome(client: FlaskClient) -> None:
    product = client.post("/api/v1/products", json=product_payload(), headers=AUTH).get_json()
    hit = {"method": "GET", "route": PRODUCT_ROUTE, "status": "200", "cache": "hit"}
    missing = {"method": "GET", "route": PRODUCT_ROUTE, "status": "404", "cache": "none"}
    unmatched = {"method": "GET", "route": "unmatched", "status": "404", "cache": "none"}
    name = "jollyjet_http_request_duration_seconds_count"
    delta = Delta((name, hit), (name, missing), (name, unmatched))
    client.get(f"/api/v1/products/{product['id']}")
    client.get("/api/v1/products/not-an-id")
    client.get("/no/such/path/12345")
    assert delta.changes() == [1, 1, 1]
    text = client.get("/metrics").get_data(as_text=True)
    assert "not-an-id" not in text and "12345" not in text  # never the raw path


def test_metrics_endpoint_serves_the_prometheus_text_format(client: FlaskClient) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    names = {f.name for f in text_string_to_metric_families(response.get_data(as_text=True))}
    expected = {
        "jollyjet_cache_requests", "jollyjet_cache_db_reads", "jollyjet_cache_guard_refusals",
        "jollyjet_cache_write_failures", "jollyjet_cache_fenced_reads", "jollyjet_cache_breaker_open",
        "jollyjet_cache_breaker_opens",
        "jollyjet_http_request_duration_seconds", "jollyjet_job_runs", "jollyjet_audit_drift_found",
        "jollyjet_audit_drift_repaired", "jollyjet_job_schedule_interval_seconds", "jollyjet_cache_repair_backlog",
    }  # fmt: skip
    assert expected <= names, expected - names


@pytest.mark.parametrize(
    ("header", "kept"),
    [
        ("0123456789abcdef", True),
        ("req-2026.11.26:node-1_42", True),
        ("short", False),
        ("has space inside it", False),
        ('quote"injection\nline', False),
        ("x" * 200, False),
        (None, False),
    ],
)
def test_a_request_id_is_kept_when_well_formed_and_generated_otherwise(
    client: FlaskClient, header: str | None, kept: bool
) -> None:
    headers: dict[str, Any] = {"X-Request-ID": header} if header is not None else {}
    if header is not None and "\n" in header:
        headers = {}  # werkzeug refuses newlines in headers; the unit below covers it
        assert request_id_from(header) != header
    returned = client.get("/health/live", headers=headers).headers["X-Request-ID"]
    if kept:
        assert returned == header
    else:
        assert returned != header and len(returned) == 32 and int(returned, 16) >= 0


def test_importing_the_service_does_not_import_prometheus_client() -> None:
    # prometheus-client picks in-memory or multiprocess values when it is first imported;
    # gunicorn.conf.py and tasks.app choose the directory first (jollyjet/ops/metrics.py).
    code = (
        "import sys; import jollyjet, jollyjet.app_factory, jollyjet.db, jollyjet.jobs; "
        "sys.exit(1 if 'prometheus_client' in sys.modules else 0)"
    )  # fmt: skip
    root = Path(__file__).resolve().parents[2]
    assert subprocess.run([sys.executable, "-c", code], cwd=root, check=False).returncode == 0
    # `import tasks` builds the worker's app (it is the `celery -A tasks` entry): the directory first.
    code = (
        "import sys; import tasks; from jollyjet.ops.metrics import multiprocess_dir; "
        "sys.exit(0 if multiprocess_dir() is not None and 'prometheus_client' in sys.modules else 1)"
    )  # fmt: skip
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("JOLLYJET_", "CELERY_", "REDIS_URL", "MONGODB_URI"))
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    assert subprocess.run([sys.executable, "-c", code], cwd=root, env=env, check=False).returncode == 0
