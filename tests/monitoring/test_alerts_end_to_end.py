"""End to end with the real servers: Prometheus scrapes the app under gunicorn, the Celery worker and beat,
Redis stops, JollyJetRedisDown fires, and Alertmanager delivers it to a webhook this test runs.
The Grafana dashboard's queries are evaluated by the same Prometheus."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.monitored_stack import MonitoredStack, monitored_stack
from tests.support.prometheus_servers import Webhook, alertmanager, prometheus, query, webhook_receiver

pytestmark = [pytest.mark.monitoring, pytest.mark.slow, pytest.mark.e2e]
ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "jollyjet-cache.json"


@dataclass
class Observed:
    stack: MonitoredStack
    prometheus: str
    webhook: Webhook


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    tmp = tmp_path_factory.mktemp("observed")
    with ExitStack() as stack:
        app = stack.enter_context(monitored_stack(tmp, ["web", "worker", "beat"]))
        hook = stack.enter_context(webhook_receiver())
        am = stack.enter_context(alertmanager(tmp, hook.url))
        targets = {
            "jollyjet-web": app.url.removeprefix("http://"),
            "jollyjet-worker": app.worker_metrics_url.removeprefix("http://").removesuffix("/metrics"),
            "jollyjet-beat": app.beat_metrics_url.removeprefix("http://").removesuffix("/metrics"),
        }
        prom = stack.enter_context(prometheus(tmp, targets, am))
        yield Observed(app, prom, hook)


def targets_up(observed: Observed) -> bool:
    result = query(observed.prometheus, "up")["data"]["result"]
    return len(result) == 3 and all(r["value"][1] == "1" for r in result)


def test_prometheus_scrapes_the_web_the_worker_and_beat(observed: Observed) -> None:
    observed.stack.wait_for(lambda: targets_up(observed), "all three targets up in Prometheus", 20)
    for _ in range(5):
        assert observed.stack.get("/api/v1/products").status_code == 200

    def counted() -> bool:
        answer = query(observed.prometheus, 'sum(jollyjet_cache_requests_total{kind="list"})')
        return bool(answer["data"]["result"]) and float(answer["data"]["result"][0]["value"][1]) == 5

    observed.stack.wait_for(counted, "the 5 list reads in Prometheus", 10)

    def redis_up() -> bool:
        # Sampled with a 250 ms budget: on a busy machine one scrape may miss it, so wait.
        result = query(observed.prometheus, "jollyjet_redis_up")["data"]["result"]
        return bool(result) and result[0]["value"][1] == "1"

    observed.stack.wait_for(redis_up, "jollyjet_redis_up 1 in Prometheus", 10)


def test_every_dashboard_query_evaluates(observed: Observed) -> None:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    exprs = [target["expr"] for panel in panels for target in panel.get("targets", [])]
    assert len(exprs) >= 10
    for expr in exprs:
        answer = query(observed.prometheus, expr.replace("$__rate_interval", "1m"))
        assert answer["status"] == "success", (expr, answer)


def test_redis_stopping_fires_the_alert_and_alertmanager_delivers_it(observed: Observed) -> None:
    observed.stack.wait_for(lambda: targets_up(observed), "all three targets up in Prometheus", 20)
    assert observed.webhook.alerts("JollyJetRedisDown") == []
    observed.stack.redis.stop()
    # The alert needs 30 s of `jollyjet_redis_up == 0` (its `for:`); then one evaluation,
    # Alertmanager's 1 s grouping and the delivery.
    delivered = observed.stack.wait_for(
        lambda: observed.webhook.alerts("JollyJetRedisDown"), "JollyJetRedisDown at the webhook", 60
    )
    alert = delivered[0]
    assert alert["labels"]["severity"] == "critical"
    assert alert["annotations"]["runbook_url"] == "docs/operations.md#jollyjetredisdown"
    # The app kept serving, from MongoDB.
    response = observed.stack.get("/api/v1/products")
    assert response.status_code == 200 and response.headers["X-Cache"] == "BYPASS"
