"""Who runs the jobs is said at start; a separate worker on the in-process store is refused."""

from __future__ import annotations

import logging

import pytest

from jollyjet.jobs import describe_job_runner, log_job_runner, separate_worker_problem
from tests.conftest import make_settings


def test_embedded_mode_runs_jobs_in_this_process() -> None:
    settings = make_settings()
    assert "threads of this process" in describe_job_runner(settings, starts_threads=True)
    assert separate_worker_problem(settings) is None


def test_gunicorn_without_a_broker_warns_that_nothing_runs_jobs(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="jollyjet.jobs"):
        log_job_runner(make_settings(), starts_threads=False)
    (record,) = caplog.records
    assert record.levelno == logging.WARNING and "nothing will run them" in record.getMessage()
    assert "python -m jollyjet" in record.getMessage()


def test_with_a_broker_the_line_says_how_to_start_the_worker_and_hides_the_password() -> None:
    settings = make_settings(redis_url="redis://:s3cret-pass@cache.internal:6379/0", mongodb_uri="mongodb://db/jj")
    line = describe_job_runner(settings, starts_threads=True)
    assert "celery -A tasks worker" in line and "celery -A tasks beat" in line
    assert "cache.internal:6379" in line and "s3cret-pass" not in line
    assert separate_worker_problem(settings) is None


def test_a_worker_on_the_in_process_store_sharing_redis_is_refused() -> None:
    problem = separate_worker_problem(make_settings(redis_url="redis://127.0.0.1:6379/0"))
    assert problem is not None and "MONGODB_URI" in problem and "python -m jollyjet" in problem
