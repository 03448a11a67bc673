"""After a Redis outage, the process whose breaker closes enqueues the cache repair at once."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from jollyjet import create_app, jobs
from jollyjet.cache.fence import CircuitBreaker
from jollyjet.extensions import services_of
from tests.conftest import make_settings


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_listeners_run_once_when_an_open_breaker_closes() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=2, cooldown_s=1, clock=clock)
    calls: list[str] = []
    breaker.on_recover.append(lambda: calls.append("recovered"))
    breaker.record_success()  # closed → closed: not a recovery
    breaker.record_failure()
    breaker.record_failure()
    assert not breaker.allow()
    clock.now = 1.5
    assert breaker.allow()  # the half-open trial
    breaker.record_success()
    breaker.record_success()
    assert calls == ["recovered"]


def test_a_trial_refused_before_reaching_redis_leaves_the_breaker_as_it_was() -> None:
    """A new Redis server waiting out the old one refuses calls (epoch.py): no failure, no success."""
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=1, clock=clock)
    breaker.record_failure()
    clock.now = 1.5
    assert breaker.allow()  # the half-open trial
    breaker.record_neither()
    assert breaker.allow()  # another trial, not a breaker stuck with one in flight
    breaker.record_neither()
    breaker.record_success()
    assert breaker.allow() and breaker.times_opened == 1


def test_a_failing_listener_does_not_break_the_call_that_closed_the_breaker() -> None:
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=0.01)

    def explode() -> None:
        raise RuntimeError("broker down")

    seen: list[bool] = []
    breaker.on_recover.extend([explode, lambda: seen.append(True)])
    breaker.record_failure()
    breaker.record_success()
    assert seen == [True]


@pytest.mark.parametrize("repair_enabled", [True, False])
def test_the_app_enqueues_the_repair_job_on_recovery(monkeypatch: pytest.MonkeyPatch, repair_enabled: bool) -> None:
    # A Redis URL nobody listens on: the app builds a real Redis backend and breaker.
    app = create_app(make_settings(redis_url="redis://127.0.0.1:1/0", jobs_off_raw="" if repair_enabled else "repair"))
    sent = threading.Event()
    names_sent: list[str] = []

    def fake_send_task(name: str, *args: Any, **kwargs: Any) -> None:
        names_sent.append(name)
        sent.set()

    monkeypatch.setattr(app.extensions["celery"], "send_task", fake_send_task)
    breaker = services_of(app).cache.breaker
    for _ in range(breaker.failure_threshold):
        breaker.record_failure()
    breaker._opened_at = -1e9  # the cool-down is over
    assert breaker.allow()
    breaker.record_success()
    if repair_enabled:
        assert sent.wait(timeout=5)  # sent from a thread, so the closing request never waits on the broker
        assert names_sent == [jobs.REPAIR]
    else:
        # Other recovery listeners (the metrics') may run; none enqueues anything.
        assert not sent.wait(timeout=0.5) and names_sent == []
