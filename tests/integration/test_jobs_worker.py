"""The cache jobs on a real Celery worker and a real Redis broker, enqueued through the admin API.

The worker runs in a thread (solo pool) so it shares this process's mongomock
database; each test has its own key prefix and queue on the session's redis-server.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from bson import ObjectId
from celery.contrib.testing.worker import start_worker
from flask import Flask
from flask.testing import FlaskClient

from jollyjet import create_app, jobs
from jollyjet.cache.fence import CacheRepairRecord
from jollyjet.cache.keys import CacheKeys
from jollyjet.extensions import services_of
from jollyjet.products.record import ProductDocument
from tests.conftest import make_settings
from tests.support.factories import product_payload
from tests.support.jobs import AUTH, celery_env, celery_process, run_job
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.integration


@pytest.fixture
def jobs_app(redis_server: RedisServer) -> Iterator[Flask]:
    """The app of a Celery app whose worker thread consumes this test's own queue."""
    settings = make_settings(
        redis_url=redis_server.url,
        celery_queue=f"jobs-{uuid.uuid4().hex[:12]}",
        popularity_sample_rate=1.0,  # count every read, so "most read" is exact
        audit_mode="full",
        jobs_off_raw="warm",  # warm-on-start is tested on its own below, with a real `celery worker`
    )
    celery = create_app(settings).extensions["celery"]
    with start_worker(celery, pool="solo", perform_ping_check=False):
        yield celery.flask_app


def create(client: FlaskClient, **fields: Any) -> dict[str, Any]:
    response = client.post("/api/v1/products", json=product_payload(**fields), headers=AUTH)
    assert response.status_code == 201, response.json
    return response.json  # type: ignore[no-any-return]


def test_warming_refills_the_most_read_products_after_the_cache_was_dropped(
    jobs_app: Flask, redis_server: RedisServer
) -> None:
    client = jobs_app.test_client()
    keys = services_of(jobs_app).cache.keys
    raw = redis_server.client()
    read = [create(client, category="warm")["id"] for _ in range(3)]
    unread = create(client, category="warm")["id"]
    for product_id in read:
        assert client.get(f"/api/v1/products/{product_id}").status_code == 200
    assert client.get("/api/v1/products?category=warm").status_code == 200

    dropped = client.delete("/api/v1/cache", headers=AUTH)
    assert dropped.status_code == 200 and dropped.json["deleted"] >= 4
    assert raw.keys(f"{keys.root}:product:*") == []

    task = run_job(client, "warm")

    assert task["result"]["products_considered"] == 3
    assert task["result"]["products_warmed"] == 3
    assert task["result"]["queries_warmed"] == 1
    for product_id in read:
        entry = keys.product(product_id).entry
        assert raw.hget(entry, "v") == b"1" and raw.ttl(entry) > 0
    assert not raw.exists(keys.product(unread).entry)  # nobody read it: not warmed
    assert client.get(f"/api/v1/products/{read[0]}").headers["X-Cache"] == "HIT"
    listing = client.get("/api/v1/products?category=warm")
    assert listing.headers["X-Cache"] == "HIT" and len(listing.json) == 4


def test_audit_repairs_drift_planted_in_redis_and_reports_it(jobs_app: Flask, redis_server: RedisServer) -> None:
    client = jobs_app.test_client()
    keys = services_of(jobs_app).cache.keys
    raw = redis_server.client()
    stale, no_ttl, gone, garbled = (create(client, stock=1)["id"] for _ in range(4))
    stale_entry = keys.product(stale).entry
    old_payload = raw.hget(stale_entry, "d")
    assert client.patch(f"/api/v1/products/{stale}", json={"stock": 7}, headers=AUTH).status_code == 200
    # Drift behind the service's back: an older version's bytes, a key without TTL,
    # a product deleted from MongoDB only, bytes that do not decode.
    raw.hset(stale_entry, mapping={"v": 1, "d": old_payload})
    raw.persist(keys.product(no_ttl).entry)
    ProductDocument.objects(id=ObjectId(gone)).delete()
    raw.hset(keys.product(garbled).entry, "d", b"\x00not json")

    task = run_job(client, "audit")

    found = {"stale_version": 1, "version_ahead": 0, "content_mismatch": 0, "deleted_in_db": 1}
    found |= {"undecodable": 1, "wrong_ttl": 1}
    result = task["result"]
    assert result["keys_checked"] == 4 and result["drift"] == found and result["repaired"] == found
    assert raw.hget(stale_entry, "v") == b"2" and orjson.loads(raw.hget(stale_entry, "d"))["stock"] == 7
    assert 0 < raw.ttl(keys.product(no_ttl).entry) <= services_of(jobs_app).cache.writer.max_product_ttl()
    assert raw.hgetall(keys.product(gone).entry) == {b"v": b"2"}  # a tombstone past the deleted version
    assert not raw.exists(keys.product(garbled).entry)
    fresh = client.get(f"/api/v1/products/{stale}")
    assert fresh.headers["X-Cache"] == "HIT" and fresh.json["stock"] == 7
    assert client.get(f"/api/v1/products/{gone}").status_code == 404
    assert client.get(f"/api/v1/products/{garbled}").json["id"] == garbled

    latest = client.get("/api/v1/cache/audit/latest", headers=AUTH)
    assert latest.status_code == 200
    assert latest.json["id"] == result["id"]
    assert latest.json["drift"] == found and latest.json["drift_total"] == 4


def test_cleanup_drops_old_schema_keys_and_gives_product_keys_a_ttl(jobs_app: Flask, redis_server: RedisServer) -> None:
    client = jobs_app.test_client()
    keys = services_of(jobs_app).cache.keys
    raw = redis_server.client()
    product = create(client)["id"]
    entry = keys.product(product).entry
    raw.persist(entry)
    old_schema = f"{keys.prefix}:v0:product:{{{product}}}"
    raw.hset(old_schema, mapping={"v": 1, "d": b"{}"})
    orphan_lock = keys.job_lock("retired-job")
    raw.set(orphan_lock, "token")  # a lock without TTL would block its job forever
    generation = services_of(jobs_app).cache.backend.get_generation(keys.generation)  # creates do not bump it
    old_page = keys.query_result("list", generation - 1, {"page": 1})
    raw.set(old_page, b"[]", ex=300)
    foreign = f"other{uuid.uuid4().hex[:8]}:v0:product:{{{product}}}"
    raw.set(foreign, b"not ours", ex=60)

    task = run_job(client, "cleanup")

    result = task["result"]
    assert result["old_schema_deleted"] == 1
    assert result["old_generation_deleted"] == 1
    assert result["ttl_added"] == 1
    assert result["no_ttl_deleted"] == 1
    assert not raw.exists(old_schema) and not raw.exists(orphan_lock) and not raw.exists(old_page)
    assert 0 < raw.ttl(entry) <= services_of(jobs_app).cache.writer.max_product_ttl()
    assert raw.get(foreign) == b"not ours"  # another service's key under another prefix
    assert client.get(f"/api/v1/products/{product}").headers["X-Cache"] == "HIT"


def test_repair_replays_a_recorded_failed_cache_write(jobs_app: Flask, redis_server: RedisServer) -> None:
    client = jobs_app.test_client()
    services = services_of(jobs_app)
    raw = redis_server.client()
    product = create(client, stock=1)["id"]
    entry = services.cache.keys.product(product).entry
    old_payload = raw.hget(entry, "d")
    assert client.patch(f"/api/v1/products/{product}", json={"stock": 2}, headers=AUTH).status_code == 200
    # As if the cache write after the database commit had failed.
    raw.hset(entry, mapping={"v": 1, "d": old_payload})
    services.cache.repairs.record(product, "write: ConnectionError")

    task = run_job(client, "repair")

    assert task["result"]["records"] == 1 and task["result"]["rewritten"] == 1
    assert task["result"]["remaining"] == 0 and task["result"]["lists_invalidated"] is True
    assert raw.hget(entry, "v") == b"2"
    assert client.get(f"/api/v1/products/{product}").json["stock"] == 2
    assert CacheRepairRecord.objects(product_id=product, done_at=None).count() == 0


def test_a_starting_worker_enqueues_a_warm_run(
    private_redis: RedisServer, shared_mongodb_uri: str, tmp_path: Path
) -> None:
    # A real `celery -A tasks worker`: only its own start-up (worker_ready) sends the warm task.
    # Its database (nx-27017) has none of the products; the popularity set it reads is in
    # the shared Redis and shows it ran with this test's settings.
    prefix, queue = f"w{uuid.uuid4().hex[:10]}", f"ready-{uuid.uuid4().hex[:10]}"
    raw = private_redis.client()
    popular = [str(ObjectId()) for _ in range(3)]
    raw.zadd(CacheKeys(prefix).popular_products, dict.fromkeys(popular, 1.0))
    env = celery_env(private_redis.url, shared_mongodb_uri, prefix, queue)
    args = ["worker", "--pool=solo", "--without-heartbeat", "--without-mingle", "--without-gossip"]
    args += [f"--hostname=ready-{queue}@127.0.0.1", "--loglevel=INFO"]
    with celery_process(args, env, tmp_path / "worker.log") as worker:
        results = wait_for_results(raw, jobs.WARM, timeout_s=20, alive=worker.poll)
    log = (tmp_path / "worker.log").read_text()
    assert len(results) == 1, log
    assert results[0]["status"] == "SUCCESS", results[0]
    assert results[0]["result"]["products_considered"] == 3
    assert results[0]["queue"] == queue


def wait_for_results(raw: Any, task_name: str, timeout_s: float, alive: Any) -> list[dict[str, Any]]:
    """Stored results of task_name in the result backend, polled until one is there (bounded)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and alive() is None:
        metas = [orjson.loads(raw.get(key)) for key in raw.scan_iter("celery-task-meta-*")]
        found = [meta for meta in metas if meta.get("name") == task_name and meta["status"] == "SUCCESS"]
        if found:
            return found
        time.sleep(0.05)
    return []
