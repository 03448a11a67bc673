"""The admin API enqueues again once a stopped broker is back (no process restart needed)."""

from __future__ import annotations

import pytest

from jollyjet import create_app
from tests.conftest import make_settings
from tests.support.api import assert_json_error
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.integration


@pytest.mark.timeout(90)
def test_enqueue_fails_cleanly_while_redis_is_down_and_works_after(
    private_redis: RedisServer, auth: dict[str, str]
) -> None:
    client = create_app(make_settings(redis_url=private_redis.url)).test_client()
    assert client.post("/api/v1/cache/audit", headers=auth).status_code == 202
    private_redis.stop()
    response = client.post("/api/v1/cache/audit", headers=auth)
    assert_json_error(response, 503, "job queue is unavailable")
    assert response.headers["Retry-After"] == "5"
    private_redis.start()
    # Celery's result consumer says "must be restarted" after its retries; the next
    # publish reconnects all the same.
    response = client.post("/api/v1/cache/audit", headers=auth)
    assert response.status_code == 202, response.get_json()
    task = client.get(response.headers["Location"], headers=auth).get_json()
    assert task["state"] == "PENDING" and task["id"] == response.get_json()["id"]
