"""Enqueueing a job when the broker is down or hung: a quick 503 with Retry-After, never a 500 or a long wait."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask

from jollyjet import create_app
from tests.conftest import make_settings
from tests.support.api import assert_json_error
from tests.support.redis_server import free_port
from tests.support.silent_server import SilentServer

WARM = "/api/v1/cache/warm"


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


def _app(redis_url: str, **overrides: object) -> Flask:
    return create_app(make_settings(redis_url=redis_url, **overrides))


@pytest.mark.timeout(60)
def test_refused_broker_is_a_503_with_retry_after(auth: dict[str, str]) -> None:
    client = _app(f"redis://127.0.0.1:{free_port()}/0").test_client()
    response = client.post(WARM, headers=auth)  # was a 500: Celery raised a bare RuntimeError
    assert_json_error(response, 503, "job queue is unavailable")
    assert response.headers["Retry-After"] == "5"


@pytest.mark.timeout(60)
def test_hung_broker_is_answered_without_waiting_for_it(
    silent: SilentServer, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("jollyjet.ops.admin.JOB_PUBLISH_TIMEOUT_S", 0.5)
    app = _app(f"redis://127.0.0.1:{silent.port}/0")
    client = app.test_client()
    response = client.post(WARM, headers=auth)
    assert_json_error(response, 503, "job queue is unavailable")
    assert response.headers["Retry-After"] == "5"
    # Answered while the publish itself is still stuck on the broker: the wait is ours, not Celery's.
    publisher = app.extensions["jollyjet_jobs"]
    assert publisher.in_flight == 1
    assert_json_error(client.post(WARM, headers=auth), 503)
    assert publisher.in_flight == 2
    # Both slots are taken by stuck publishes: the next request does not start a third.
    assert_json_error(client.post(WARM, headers=auth), 503)
    assert publisher.in_flight == 2
