"""The Celery side of the jobs: run_job (lock, cache off, retries), the beat schedule, single-beat claims.

No worker runs: tasks are called with a stand-in for Celery's bound `self`, or run
in-process with Task.apply().
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from celery.beat import ScheduleEntry, Scheduler
from celery.schedules import crontab, schedule
from flask import Flask
from pymongo.errors import AutoReconnect

from jollyjet import jobs
from jollyjet.cache.store import CacheError
from jollyjet.extensions import Services, services_of
from jollyjet.jobs import SingleBeatScheduler, periodic_job_definitions, run_job, slot_of
from jollyjet.jobs.audit import latest_audit
from jollyjet.products.repository import DatabaseUnavailable
from jollyjet.settings import Settings, SettingsError
from tests.conftest import make_settings
from tests.support.fake_cache import FakeCacheBackend
from tests.support.job_stack import OutageBackend, job_app

SKIPPED_BUSY = {"skipped": "another run of this job is in progress"}


@dataclass
class Ran:
    """A stand-in job report: which run ran."""

    ran: str
    duration_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"ran": self.ran}


class RetryRequested(Exception):
    """What the stand-in's retry() returns for run_job to raise (Celery's raises Retry itself)."""


@dataclass
class FakeTask:
    """The bound task `self` run_job uses: request.retries and retry()."""

    retries: int = 0
    retry_calls: list[dict[str, Any]] = field(default_factory=list)

    @property
    def request(self) -> SimpleNamespace:
        return SimpleNamespace(retries=self.retries)

    def retry(self, **kwargs: Any) -> RetryRequested:
        self.retry_calls.append(kwargs)
        return RetryRequested()


# --- run_job ----------------------------------------------------------------------------------------
def test_a_second_run_of_a_job_is_skipped_while_the_first_holds_its_lock(app: Flask, services: Services) -> None:
    inner: list[dict[str, Any]] = []

    def first_run(*_: object) -> Ran:
        inner.append(run_job(FakeTask(), "audit", lambda *_: Ran("second")))
        inner.append(run_job(FakeTask(), "warm", lambda *_: Ran("other job")))
        assert services.cache is not None
        ttl = services.cache.backend.client.ttl(services.cache.keys.job_lock("audit"))
        # A killed run's lock expires with the task's hard time limit.
        assert ttl is not None and 0 < ttl <= services.settings.celery_time_limit_s
        return Ran("first")

    with app.app_context():
        assert run_job(FakeTask(), "audit", first_run) == {"ran": "first"}
        assert inner == [SKIPPED_BUSY, {"ran": "other job"}]  # the lock is per job
        assert run_job(FakeTask(), "audit", lambda *_: Ran("third")) == {"ran": "third"}
    assert services.cache is not None and not services.cache.backend.client.exists(
        services.cache.keys.job_lock("audit")
    )


def test_with_the_cache_disabled_a_job_is_skipped_without_running() -> None:
    app = job_app(FakeCacheBackend(), cache_enabled=False)
    calls: list[Services] = []

    def body(services: Services, _: Settings) -> Ran:
        calls.append(services)
        return Ran("")

    with app.app_context():
        result = run_job(FakeTask(), "audit", body)

    assert result == {"skipped": "the cache is disabled (JOLLYJET_CACHE_ENABLED=false)"} and calls == []


@pytest.mark.parametrize("retries", [0, 3, 20])
@pytest.mark.parametrize("error", [CacheError("down"), DatabaseUnavailable("down"), AutoReconnect("down")])
def test_transient_failures_become_retries_with_bounded_jittered_backoff(
    app: Flask, services: Services, retries: int, error: Exception
) -> None:
    task = FakeTask(retries=retries)

    def fail(*_: object) -> Ran:
        raise error

    with app.app_context(), pytest.raises(RetryRequested):
        run_job(task, "cleanup", fail)

    [call] = task.retry_calls
    settings = services.settings
    delay = min(settings.celery_retry_backoff_max_s, 2 ** (retries + 1))
    assert call["exc"] is error and call["max_retries"] == jobs.CELERY_MAX_RETRIES
    assert delay / 2 <= call["countdown"] <= delay <= settings.celery_retry_backoff_max_s
    assert services.cache is not None and not services.cache.backend.client.exists(
        services.cache.keys.job_lock("cleanup")
    )


def test_a_lock_that_cannot_be_taken_because_redis_is_down_is_retried_too() -> None:
    backend = OutageBackend()
    app = job_app(backend)
    backend.failing = {"acquire_lock"}
    task = FakeTask()

    with app.app_context(), pytest.raises(RetryRequested):
        run_job(task, "repair", lambda *_: Ran(""))

    assert isinstance(task.retry_calls[0]["exc"], CacheError)


def test_other_errors_are_not_retried(app: Flask) -> None:
    task = FakeTask()

    def broken(*_: object) -> Ran:
        raise ValueError("a bug")

    with app.app_context(), pytest.raises(ValueError, match="a bug"):
        run_job(task, "audit", broken)
    assert task.retry_calls == []


# --- the registered tasks, run in-process --------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "report_key"),
    [(jobs.WARM, "keys_warmed"), (jobs.CLEANUP, "keys_scanned"), (jobs.AUDIT, "drift"), (jobs.REPAIR, "records")],
)
def test_each_registered_task_runs_its_job_in_the_app_context(app: Flask, name: str, report_key: str) -> None:
    result = app.extensions["celery"].tasks[name].apply()

    assert result.successful(), result.traceback
    assert report_key in result.result


def test_the_repair_task_runs_even_while_an_orphaned_repair_lock_is_held(app: Flask) -> None:
    # A lock left by a timed-out SET NX that landed late, or brought back by an old snapshot:
    # nobody will release it, and the replay must not wait for its expiry.
    cache = services_of(app).require_cache()
    assert cache.backend.acquire_lock(cache.keys.job_lock("repair"), 600_000) is not None

    result = app.extensions["celery"].tasks[jobs.REPAIR].apply()

    assert result.successful(), result.traceback
    assert "records" in result.result and "skipped" not in result.result


def test_the_audit_task_stores_its_run(app: Flask) -> None:
    result = app.extensions["celery"].tasks[jobs.AUDIT].apply()

    stored = latest_audit()
    assert stored is not None and result.result["id"] == str(stored.id)


def test_a_task_failing_transiently_is_retried_up_to_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "CELERY_MAX_RETRIES", 2)
    app = job_app(FakeCacheBackend())
    attempts: list[int] = []

    def flaky(*_: object) -> Ran:
        attempts.append(1)
        raise CacheError("redis down")

    monkeypatch.setattr(jobs, "run_audit", flaky)
    # Eager apply() runs each retry at once (no countdown wait), as a worker would run it later.
    result = app.extensions["celery"].tasks[jobs.AUDIT].apply()

    assert len(attempts) == 1 + 2
    assert result.failed() and isinstance(result.result, CacheError)


# --- the beat schedule --------------------------------------------------------------------------------
def test_the_schedule_has_every_job_timed_by_its_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    # Warming and cleanup are timed by constants (jollyjet/settings.py), the audit and repair by settings.
    monkeypatch.setattr("jollyjet.jobs.WARM_INTERVAL_S", 11)
    monkeypatch.setattr("jollyjet.jobs.CLEANUP_INTERVAL_S", 12)
    settings = make_settings(audit_interval_s=13, repair_interval_s=14)

    definitions = periodic_job_definitions(settings)

    assert definitions == {
        "cache-warm": {"task": jobs.WARM, "schedule": timedelta(seconds=11), "options": {"expires": 11}},
        "cache-cleanup": {"task": jobs.CLEANUP, "schedule": timedelta(seconds=12), "options": {"expires": 12}},
        "cache-audit": {"task": jobs.AUDIT, "schedule": timedelta(seconds=13), "options": {"expires": 13}},
        "cache-repair": {"task": jobs.REPAIR, "schedule": timedelta(seconds=14), "options": {"expires": 14}},
    }


@pytest.mark.parametrize(
    ("switch", "entry"),
    [("warm", "cache-warm"), ("cleanup", "cache-cleanup"), ("audit", "cache-audit"), ("repair", "cache-repair")],
)
def test_each_schedule_entry_is_switched_by_its_setting(switch: str, entry: str) -> None:
    definitions = periodic_job_definitions(make_settings(jobs_off_raw=switch))

    assert entry not in definitions and len(definitions) == 3


def test_jobs_off_names_only_jobs() -> None:
    assert not periodic_job_definitions(make_settings(jobs_off_raw=" warm, cleanup,audit ,repair"))
    with pytest.raises(SettingsError, match="JOLLYJET_JOBS_OFF"):
        make_settings(jobs_off_raw="warm,backup")


def test_nothing_is_scheduled_with_the_cache_disabled() -> None:
    assert periodic_job_definitions(make_settings(cache_enabled=False)) == {}


# --- single beat ----------------------------------------------------------------------------------------
def scheduler_for(app: Flask) -> SingleBeatScheduler:
    """A scheduler without its schedule store: claim() needs only the Celery app."""
    scheduler: SingleBeatScheduler = object.__new__(SingleBeatScheduler)
    scheduler.app = app.extensions["celery"]
    return scheduler


def entry_for(app: Flask, name: str = "cache-audit", every_s: int = 5) -> ScheduleEntry:
    celery = app.extensions["celery"]
    return ScheduleEntry(
        name=name, task=jobs.AUDIT, schedule=schedule(timedelta(seconds=every_s), app=celery), app=celery
    )


def test_slots_are_interval_numbers() -> None:
    app = job_app(FakeCacheBackend())
    assert slot_of(entry_for(app, every_s=5), 1004.9) == (200, 5.0)
    assert slot_of(entry_for(app, every_s=5), 1005.0) == (201, 5.0)


def test_one_slot_is_claimed_once_across_beat_processes(app: Flask) -> None:
    first, second = scheduler_for(app), scheduler_for(app)
    entry = entry_for(app)

    assert first.claim(entry, 1000.0)
    assert not second.claim(entry, 1004.9)  # same slot: the other beat already sent it
    assert not first.claim(entry, 1001.0)
    assert second.claim(entry, 1005.0)  # the next slot is claimed afresh
    assert not first.claim(entry, 1006.0)
    assert first.claim(entry_for(app, name="cache-warm"), 1006.0)  # claims are per entry


def test_a_claim_lasts_two_intervals(app: Flask, services: Services) -> None:
    scheduler_for(app).claim(entry_for(app, every_s=30), 3000.0)

    assert services.cache is not None
    ttl = services.cache.backend.client.ttl(services.cache.keys.beat_claim("cache-audit", 100))
    assert ttl is not None and 30 < ttl <= 60


def test_a_claim_that_cannot_reach_redis_sends_nothing() -> None:
    backend = OutageBackend()
    app = job_app(backend)
    backend.failing = {"*"}

    assert not scheduler_for(app).claim(entry_for(app), 1000.0)


def test_schedules_without_an_interval_and_a_disabled_cache_are_not_claimed() -> None:
    app = job_app(FakeCacheBackend())
    celery = app.extensions["celery"]
    nightly = ScheduleEntry(name="nightly", task=jobs.AUDIT, schedule=crontab(hour=3, minute=0), app=celery)
    assert scheduler_for(app).claim(nightly, 1000.0) and scheduler_for(app).claim(nightly, 1000.0)

    uncached = job_app(FakeCacheBackend(), cache_enabled=False)
    assert scheduler_for(uncached).claim(entry_for(uncached), 1000.0)
    assert scheduler_for(uncached).claim(entry_for(uncached), 1000.0)


def test_apply_entry_sends_only_what_this_beat_claimed(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[str] = []
    monkeypatch.setattr(Scheduler, "apply_entry", lambda self, entry, producer=None: sent.append(entry.name))
    monkeypatch.setattr(jobs, "time", SimpleNamespace(time=lambda: 1000.0))  # only beat's clock
    entry = entry_for(app)

    scheduler_for(app).apply_entry(entry)
    scheduler_for(app).apply_entry(entry)

    assert sent == ["cache-audit"]
