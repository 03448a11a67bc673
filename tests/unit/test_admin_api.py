"""Admin endpoints: enqueue jobs, task states, the latest audit, dropping the cache.

The unit app has no REDIS_URL, so Celery's broker is memory:// and its result backend
cache+memory://: enqueueing works in-process, with no worker to run anything.
"""

from __future__ import annotations

import uuid

import pytest
from flask import Flask
from flask.testing import FlaskClient

from jollyjet import jobs
from jollyjet.cache.keys import CacheKeys
from jollyjet.extensions import services_of
from jollyjet.jobs.audit import CacheAudit
from jollyjet.settings import AuditMode
from tests.support.api import assert_json_error
from tests.support.fake_cache import FakeCacheBackend
from tests.support.job_stack import OutageBackend, all_keys, job_app, product_values
from tests.support.redis_server import free_port

JOBS = ("warm", "audit", "cleanup", "repair")
UNKNOWN_TASK = "/api/v1/tasks/2f1d0b8e-9b7a-4c55-9c59-6d1f0e3c1a11"


@pytest.mark.parametrize("job", JOBS)
def test_enqueueing_a_job_returns_202_and_where_to_poll(client: FlaskClient, auth: dict[str, str], job: str) -> None:
    response = client.post(f"/api/v1/cache/{job}", headers=auth)

    assert response.status_code == 202
    body = response.get_json()
    task_id = str(uuid.UUID(body["id"]))
    assert body == {"id": task_id, "job": job, "state": "PENDING"}
    assert response.headers["Location"] == f"/api/v1/tasks/{task_id}"
    polled = client.get(response.headers["Location"], headers=auth)
    assert polled.status_code == 200 and polled.get_json()["state"] == "PENDING"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        *(("post", f"/api/v1/cache/{job}") for job in JOBS),
        ("get", UNKNOWN_TASK),
        ("get", "/api/v1/cache/audit/latest"),
        ("delete", "/api/v1/cache"),
    ],
)
@pytest.mark.parametrize("header", [None, "Bearer wrong-token", "Basic dGVzdDp0ZXN0"])
def test_every_admin_endpoint_needs_the_bearer_token(
    client: FlaskClient, fake_cache: FakeCacheBackend, method: str, path: str, header: str | None
) -> None:
    fake_cache.client.set("t:v1:keep", b"x", ex=60)
    headers = {"Authorization": header} if header else {}

    response = getattr(client, method)(path, headers=headers)

    assert_json_error(response, 401, "Bearer")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert fake_cache.client.exists("t:v1:keep")


def test_unknown_jobs_and_malformed_task_ids_are_404(client: FlaskClient, auth: dict[str, str]) -> None:
    assert client.post("/api/v1/cache/bogus", headers=auth).status_code == 404
    assert client.get("/api/v1/tasks/not-a-uuid", headers=auth).status_code == 404
    assert client.get("/api/v1/tasks/12345", headers=auth).status_code == 404


def test_an_unknown_task_id_reads_as_pending(client: FlaskClient, auth: dict[str, str]) -> None:
    response = client.get(UNKNOWN_TASK, headers=auth)

    assert response.status_code == 200
    assert response.get_json() == {"id": UNKNOWN_TASK.rsplit("/", 1)[1], "state": "PENDING"}


def test_a_finished_task_shows_its_job_and_report(app: Flask, client: FlaskClient, auth: dict[str, str]) -> None:
    celery = app.extensions["celery"]
    celery.conf.task_store_eager_result = True  # let apply() store its result, as a worker would
    task_id = str(uuid.uuid4())
    celery.tasks[jobs.AUDIT].apply(task_id=task_id)

    body = client.get(f"/api/v1/tasks/{task_id}", headers=auth).get_json()

    assert body["state"] == "SUCCESS" and body["job"] == "audit"
    assert body["result"]["mode"] == "sample" and "drift" in body["result"]


def test_latest_audit_is_404_before_the_first_and_then_the_newest_run(
    app: Flask, client: FlaskClient, auth: dict[str, str]
) -> None:
    assert_json_error(client.get("/api/v1/cache/audit/latest", headers=auth), 404, "no audit")
    services = services_of(app)
    services.products.create(product_values())
    assert services.cache is not None
    run = CacheAudit(
        services.cache.backend,
        services.cache.keys,
        services.cache.writer,
        services.mongo,
        mode=AuditMode.FULL,
    ).run()

    response = client.get("/api/v1/cache/audit/latest", headers=auth)

    assert response.status_code == 200
    body = response.get_json()
    assert body == run.as_dict()
    assert body["keys_checked"] == 1 and body["drift_total"] == 0 and body["finished_at"].endswith("Z")


def test_dropping_the_cache_deletes_only_this_services_keys(
    app: Flask, client: FlaskClient, auth: dict[str, str], fake_cache: FakeCacheBackend
) -> None:
    services = services_of(app)
    for _ in range(2):
        # Two product entries and the set of writes in flight (no list was read: nothing else).
        services.products.create(product_values())
    keys = services.cache.keys
    fake_cache.client.set(f"{CacheKeys(keys.prefix, schema=0).root}:old", b"x", ex=60)
    ours = all_keys(fake_cache, keys.service_pattern())
    foreign = {f"other:v1:product:{{{'a' * 24}}}", f"{keys.prefix}:visits", f"{keys.prefix}x:v1:lookalike"}
    for key in foreign:
        fake_cache.client.set(key, b"not ours", ex=60)

    response = client.delete("/api/v1/cache", headers=auth)

    assert len(ours) == 4
    assert response.status_code == 200 and response.get_json() == {"deleted": 4}
    assert all_keys(fake_cache) == foreign


def test_with_the_cache_disabled_jobs_and_drops_are_409(auth: dict[str, str]) -> None:
    client = job_app(FakeCacheBackend(), cache_enabled=False).test_client()

    for job in JOBS:
        assert_json_error(client.post(f"/api/v1/cache/{job}", headers=auth), 409, "disabled")
    assert_json_error(client.delete("/api/v1/cache", headers=auth), 409, "disabled")


def test_an_unreachable_broker_is_503_with_retry_after(auth: dict[str, str]) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    client = job_app(FakeCacheBackend(), celery_broker_url=dead).test_client()

    response = client.post("/api/v1/cache/audit", headers=auth)

    assert_json_error(response, 503, "job queue")
    assert response.headers["Retry-After"] == "5"


def test_an_unreachable_result_backend_is_503(auth: dict[str, str]) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    client = job_app(FakeCacheBackend(), celery_result_backend=dead).test_client()

    assert_json_error(client.get(UNKNOWN_TASK, headers=auth), 503, "job queue")


def test_dropping_the_cache_while_redis_is_down_is_503(auth: dict[str, str]) -> None:
    backend = OutageBackend()
    client = job_app(backend).test_client()
    backend.failing = {"*"}

    response = client.delete("/api/v1/cache", headers=auth)

    assert_json_error(response, 503, "nothing was dropped")
    assert response.headers["Retry-After"] == "5"
