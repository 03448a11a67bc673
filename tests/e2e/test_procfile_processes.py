"""End to end: the Procfile's web, worker and beat as separate processes, on a real Redis and a shared store.

MongoDB is nx-27017 (a MongoDB wire-protocol server in its own process), or the real
server in MONGODB_URI. Nothing here enqueues a job through the admin API: beat sends
the audit every second, the (prefork) worker runs it, and the drift planted behind
the service's back is found, repaired and reported, and the API serves MongoDB's state.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
import redis
import requests
from bson import ObjectId
from pymongo.collection import Collection

from jollyjet import jobs
from jollyjet.app_factory import CACHE_TTL_JITTER
from jollyjet.cache.keys import CacheKeys
from jollyjet.cache.scripts import RELEASE_LOCK
from jollyjet.products.catalog import CachePolicy
from tests.support.factories import product_payload
from tests.support.mongo_server import mongo_for_tests, unique_database_name
from tests.support.procfile import (
    ProcfileProcess,
    bind_to_loopback,
    command_argv,
    procfile_env,
    procfile_processes,
    read_procfile,
    run_release,
)
from tests.support.redis_server import RedisServer, free_port

pytestmark = pytest.mark.e2e

T = TypeVar("T")
TOKEN = f"e2e-{secrets.token_hex(12)}"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CATEGORY = "e2e"
# Set explicitly so the TTL bounds asserted below are the ones the processes use.
PRODUCT_TTL_S, TTL_JITTER, TOMBSTONE_TTL_S = 600, CACHE_TTL_JITTER, CachePolicy().tombstone_ttl_s
STARTUP_TIMEOUT_S = 20.0
AUDIT_TIMEOUT_S = 20.0
PLANTED = {
    "stale_version": 1,
    "version_ahead": 0,
    "content_mismatch": 1,
    "deleted_in_db": 1,
    "undecodable": 0,
    "wrong_ttl": 1,
}
# gunicorn's access log with the serving worker's pid (%(p)s is "<pid>").
ACCESS_LOG_FORMAT = 'pid=%(p)s "%(r)s" %(s)s'
_ACCESS_LINE = re.compile(r'^pid=<(\d+)> "GET (\S+) HTTP/[0-9.]+" (\d{3})$', re.MULTILINE)


@dataclass
class Stack:
    """The running processes and direct handles on what they share."""

    url: str
    processes: dict[str, ProcfileProcess]
    redis: redis.Redis
    products: Collection[dict[str, Any]]
    keys: CacheKeys
    queue: str

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        # No session: every request is a new connection, which either web process may accept.
        return requests.get(self.url + path, timeout=5, **kwargs)

    def entry(self, product: dict[str, Any]) -> str:
        return self.keys.product(product["id"]).entry


@pytest.fixture
def stack(private_redis: RedisServer, tmp_path: Path) -> Iterator[Stack]:
    """Redis, the store, the Procfile's release, then web + worker + beat; all stopped afterwards, even on failure."""
    mongo = mongo_for_tests()
    raw = private_redis.client()
    database = unique_database_name("jj_e2e")
    unique = uuid.uuid4().hex[:10]
    port = free_port()
    env = procfile_env(
        PORT=str(port),
        MONGODB_URI=mongo.uri_for(database),
        REDIS_URL=private_redis.url,
        JOLLYJET_ENV="testing",
        JOLLYJET_API_TOKENS=TOKEN,
        JOLLYJET_CACHE_KEY_PREFIX=f"e2e{unique}",
        CELERY_QUEUE=f"e2e-{unique}",
        JOLLYJET_LOG_LEVEL="INFO",
        JOLLYJET_CACHE_PRODUCT_TTL_S=str(PRODUCT_TTL_S),
        # The 100 ms production default turns a Redis reply delayed by a busy test machine into
        # a BYPASS read; this test is about drift repair, not timeouts (the fault tests are).
        JOLLYJET_REDIS_TIMEOUT_MS="2000",
        JOLLYJET_AUDIT_INTERVAL_S="1",
        JOLLYJET_AUDIT_MODE="full",
        # Cleanup also gives TTL-less keys a TTL; off, so the audit is the only job that can repair the drift.
        JOLLYJET_JOBS_OFF="cleanup",
        JOLLYJET_REPAIR_INTERVAL_S="3600",  # nothing to replay here; keep the single pool slot for the audit
        WEB_CONCURRENCY="2",  # two web processes share the cache and the store
        CELERY_CONCURRENCY="1",  # prefork with one child: tasks run in a forked process
        CELERY_BEAT_SCHEDULE=str(tmp_path / "beat-schedule"),
        # gunicorn 27's control socket defaults to ~/.gunicorn/gunicorn.ctl, one path for
        # every gunicorn of this user: a test must not take it over.
        # gunicorn's access log (off in the Procfile) as a test instrument: it names the serving worker.
        GUNICORN_CMD_ARGS=f"--no-control-socket --access-logfile - --access-logformat '{ACCESS_LOG_FORMAT}'",
    )
    try:
        mongo.start()
        run_release(env, tmp_path)  # the indexes, before any process serves (as a platform runs it)
        with procfile_processes(["web", "worker", "beat"], env, tmp_path) as processes, mongo.client() as client:
            yield Stack(
                url=f"http://127.0.0.1:{port}",
                processes=processes,
                redis=raw,
                products=client[database]["products"],
                keys=CacheKeys(env["JOLLYJET_CACHE_KEY_PREFIX"]),
                queue=env["CELERY_QUEUE"],
            )
    finally:
        raw.close()
        mongo.close()


def wait_for(stack: Stack, check: Callable[[], T | None], what: str, timeout_s: float) -> T:
    """Poll check() until it returns a value (bounded); fails at once if a process has exited."""
    deadline = time.monotonic() + timeout_s
    while True:
        exited = [p.name for p in stack.processes.values() if not p.alive()]
        assert not exited, f"{exited} exited while waiting for {what} (logs below)"
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"no {what} within {timeout_s} s")
        time.sleep(0.05)


def ready(stack: Stack) -> dict[str, Any] | None:
    try:
        response = stack.get("/health/ready")
    except (requests.ConnectionError, requests.Timeout):
        # gunicorn is not listening yet, or its workers are still importing the app (slow on
        # a busy machine): the request waits in the listen queue; wait_for bounds the wait.
        return None
    return response.json() if response.status_code == 200 else None  # type: ignore[no-any-return]


def create(stack: Stack, **fields: Any) -> dict[str, Any]:
    response = requests.post(
        f"{stack.url}/api/v1/products", json=product_payload(category=CATEGORY, **fields), headers=AUTH, timeout=5
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def read(stack: Stack, product: dict[str, Any]) -> requests.Response:
    return stack.get(f"/api/v1/products/{product['id']}")


def listing(stack: Stack) -> requests.Response:
    response = stack.get(f"/api/v1/products?category={CATEGORY}&page_size=10")
    assert response.status_code == 200, response.text
    return response


def web_pids_serving(stack: Stack, path: str) -> set[str]:
    """gunicorn worker pids whose access log shows a 200 for GET path."""
    lines = _ACCESS_LINE.findall(stack.processes["web"].log_text())
    return {pid for pid, logged, status in lines if logged == path and status == "200"}


def wait_served_by_both(stack: Stack, path: str, expected: Any, x_cache: str | None = None) -> None:
    """GET path with fresh connections until both web processes have answered it, each time with expected."""

    def both() -> set[str] | None:
        response = stack.get(path)
        assert response.status_code == 200 and response.json() == expected, response.text
        assert x_cache is None or response.headers["X-Cache"] == x_cache
        pids = web_pids_serving(stack, path)
        return pids if len(pids) == 2 else None

    wait_for(stack, both, f"GET {path} served by both web processes", 10)


def wait_started(stack: Stack) -> None:
    """Web ready, the worker's warm-on-start run stored, beat past its first send (each built its app)."""
    health = wait_for(stack, lambda: ready(stack), "ready web process (GET /health/ready 200)", STARTUP_TIMEOUT_S)
    assert health == {"status": "ok", "mongodb": "ok", "redis": "ok", "breaker": "closed"}

    def warm_done() -> list[dict[str, Any]]:
        # Finished, not merely STARTED (task_track_started stores that state first).
        return [w for w in task_results(stack, jobs.WARM) if w.get("status") in ("SUCCESS", "FAILURE")]

    wait_for(stack, warm_done, "warm-on-start task result", STARTUP_TIMEOUT_S)
    wait_for(stack, lambda: "Sending due task" in stack.processes["beat"].log_text(), "beat send", STARTUP_TIMEOUT_S)


@contextmanager
def audit_paused(stack: Stack) -> Iterator[None]:
    """Hold the audit's own job lock, so runs beat sends meanwhile skip ("another run in progress").

    Beat sends the audit every second and planting takes several round trips: without
    this, one run could see only part of the drift and the next run the rest.
    """
    lock, token = stack.keys.job_lock("audit"), secrets.token_hex(8)
    # Taken only between runs: a run in progress holds the lock until it has stored its result.
    wait_for(stack, lambda: stack.redis.set(lock, token, nx=True, px=15000), "a gap between audit runs", 10)
    try:
        yield
    finally:
        stack.redis.eval(RELEASE_LOCK, 1, lock, token)


def latest_audit(stack: Stack) -> dict[str, Any] | None:
    response = stack.get("/api/v1/cache/audit/latest", headers=AUTH)
    if response.status_code == 404:
        return None  # no run has finished yet
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def task_results(stack: Stack, task_name: str) -> list[dict[str, Any]]:
    """Results the worker stored in the result backend for this task name (extended results carry it)."""
    metas = [orjson.loads(stack.redis.get(key) or b"{}") for key in stack.redis.scan_iter("celery-task-meta-*")]
    return [meta for meta in metas if meta.get("name") == task_name]


def audit_with_drift(stack: Stack) -> dict[str, Any] | None:
    """The report of a finished audit task that found drift. Read from the result backend,
    not /audit/latest: with a 1 s interval the next run replaces "latest" within a second."""
    for meta in task_results(stack, jobs.AUDIT):
        result = meta.get("result") or {}
        if meta.get("status") == "SUCCESS" and result.get("drift_total", 0) > 0:
            return result  # type: ignore[no-any-return]
    return None


def test_beat_scheduled_audit_repairs_drift_planted_behind_the_services_back(stack: Stack) -> None:
    # Waits for warm-on-start before any product exists: warming refills cached lists, and
    # a run landing while the drift is planted would change what the API serves meanwhile.
    wait_started(stack)
    web_log = stack.processes["web"].log_text()
    assert f"Listening at: {stack.url} " in web_log  # the Procfile's 0.0.0.0, moved to loopback for tests
    assert len(re.findall(r"Booting worker with pid: \d+", web_log)) == 2, web_log
    # Warm-on-start: the worker's own start-up enqueued one warm run, and it succeeded.
    warms = task_results(stack, jobs.WARM)
    assert [(w["status"], w["queue"]) for w in warms] == [("SUCCESS", stack.queue)], warms
    assert warms[0]["result"]["products_considered"] == 0 and warms[0]["result"]["queries_considered"] == 0
    assert "worker ready: cache warming enqueued" in stack.processes["worker"].log_text()
    # The release phase (`flask --app app ensure-indexes`) created the indexes; no process serving does.
    unique = [ix["key"] for ix in stack.products.index_information().values() if ix.get("unique")]
    assert unique == [[("sku", 1)]], unique

    stale, deleted, mismatched, persisted = (create(stack, stock=1) for _ in range(4))
    for product in (stale, deleted, mismatched, persisted):
        response = read(stack, product)
        assert response.status_code == 200 and response.json() == product
        assert response.headers["X-Cache"] == "HIT"  # written through by the POST
    # Both web processes serve it from the shared cache, whichever wrote it.
    path = f"/api/v1/products/{stale['id']}"
    wait_served_by_both(stack, path, stale, x_cache="HIT")

    stale_v1_bytes = stack.redis.hget(stack.entry(stale), "d")
    patched = requests.patch(f"{stack.url}{path}", json={"stock": 7}, headers=AUTH, timeout=5)
    assert patched.status_code == 200 and patched.json()["version"] == 2
    assert listing(stack).headers["X-Cache"] == "MISS"
    assert listing(stack).headers["X-Cache"] == "HIT"

    with audit_paused(stack):
        # Drift behind the service's back: an older version's bytes, a product deleted
        # in the store only, different content under the same version, a key without TTL.
        stack.redis.hset(stack.entry(stale), mapping={"v": 1, "d": stale_v1_bytes})
        assert stack.products.delete_one({"_id": ObjectId(deleted["id"])}).deleted_count == 1
        wrong = orjson.loads(stack.redis.hget(stack.entry(mismatched), "d")) | {"name": "Planted name"}
        stack.redis.hset(stack.entry(mismatched), "d", orjson.dumps(wrong))
        assert stack.redis.persist(stack.entry(persisted))
        # The API serves the drift: a cached read never consults the store.
        assert read(stack, stale).json()["stock"] == 1
        assert read(stack, deleted).status_code == 200
        assert read(stack, mismatched).json()["name"] == "Planted name"
        # A cached page, though, notices an item whose entry is older than the version the
        # page was read at, and reads MongoDB instead (where the deleted product is gone).
        cached_list = listing(stack)
        assert cached_list.headers["X-Cache"] == "MISS" and len(cached_list.json()) == 3
        assert stack.redis.ttl(stack.entry(persisted)) == -1

    # No admin call: the next run beat sends sees all of it at once. Runs before the
    # planting found nothing (everything was written through), so drift marks this one.
    run = wait_for(stack, lambda: audit_with_drift(stack), "audit run that found drift", AUDIT_TIMEOUT_S)
    assert run["mode"] == "full" and run["keys_checked"] == 4, run
    assert run["drift"] == PLANTED and run["repaired"] == PLANTED, run

    stale_now = read(stack, stale)
    assert stale_now.headers["X-Cache"] == "HIT" and stale_now.json() == patched.json()
    assert read(stack, deleted).status_code == 404
    assert stack.redis.hgetall(stack.entry(deleted)) == {b"v": b"2"}  # tombstone past the deleted version
    assert 0 < stack.redis.ttl(stack.entry(deleted)) <= TOMBSTONE_TTL_S
    mismatched_now = read(stack, mismatched)
    assert mismatched_now.headers["X-Cache"] == "HIT" and mismatched_now.json() == mismatched
    assert 0 < stack.redis.ttl(stack.entry(persisted)) <= PRODUCT_TTL_S * (1 + TTL_JITTER) + 1
    assert read(stack, persisted).json() == persisted
    # The audit invalidated the cached lists, which held the drifted products too.
    fresh_list = listing(stack)
    assert fresh_list.headers["X-Cache"] == "MISS"
    assert sorted(fresh_list.json(), key=by_id) == sorted([patched.json(), mismatched, persisted], key=by_id)

    def later_run() -> dict[str, Any] | None:
        latest = latest_audit(stack)
        return latest if latest and latest["id"] != run["id"] else None

    # The API shows the runs too (the latest is a later one by now, or the repairing one).
    later = wait_for(stack, later_run, "audit run after the repairing one", 10)
    assert later["drift_total"] == 0 and later["keys_checked"] == 4, later

    # The repairing run was a task the worker ran, and every audit task was one beat sent
    # (beat logs each send before making it, so its count can only be ahead).
    audits = task_results(stack, jobs.AUDIT)
    assert [a["status"] for a in audits if a["result"].get("id") == run["id"]] == ["SUCCESS"], audits
    assert all(a["queue"] == stack.queue for a in audits)
    sent = stack.processes["beat"].log_text().count("Sending due task cache-audit (jollyjet.cache.audit)")
    assert 0 < len(audits) <= sent, (len(audits), sent)
    worker_log = stack.processes["worker"].log_text()
    assert "concurrency: 1 (prefork)" in worker_log
    # Each pool process reconnects to MongoDB (tasks/__init__.py); pymongo warns when
    # a forked child uses a client its parent opened.
    assert "opened before fork" not in worker_log, "a pool process used the MongoClient its parent opened"
    assert all(p.alive() for p in stack.processes.values())


def by_id(product: dict[str, Any]) -> str:
    return str(product["id"])


def test_the_runner_expands_each_procfile_line_as_sh_does() -> None:
    # An empty variable takes its :- default too; an unset one without default is an error.
    env = {"PATH": os.defpath, "PORT": "8123", "WEB_CONCURRENCY": "3", "CELERY_CONCURRENCY": ""}
    lines = read_procfile()
    assert set(lines) == {"release", "web", "worker", "beat"}
    for name, command in lines.items():
        shell = subprocess.run(
            ["sh", "-c", f'set -- {command}; printf "%s\\n" "$@"'], env=env, capture_output=True, check=True, text=True
        )
        assert command_argv(command, env) == shell.stdout.splitlines(), name
    web = bind_to_loopback(command_argv(lines["web"], env))
    assert web[web.index("--bind") + 1] == "127.0.0.1:8123" and "--workers" in web
    with pytest.raises(KeyError, match="PORT"):
        command_argv(lines["web"], {})


def test_in_production_a_request_is_logged_once_and_every_line_is_json(
    private_redis: RedisServer, tmp_path: Path
) -> None:
    """The Procfile's web as deployed (no test flags for gunicorn): one access line per request, the
    app's; gunicorn's own messages in the same JSON stream, each once; the token nowhere."""
    mongo = mongo_for_tests()
    port = free_port()
    env = procfile_env(
        PORT=str(port),
        MONGODB_URI=mongo.uri_for(unique_database_name("jj_logs")),
        REDIS_URL=private_redis.url,
        JOLLYJET_ENV="production",
        JOLLYJET_API_TOKENS=TOKEN,
        JOLLYJET_CACHE_KEY_PREFIX=f"logs{uuid.uuid4().hex[:10]}",
        JOLLYJET_LOG_LEVEL="INFO",
        WEB_CONCURRENCY="2",
    )
    request_id = f"one-line-{uuid.uuid4().hex}"
    path = f"/api/v1/products/count?category=one-line-{uuid.uuid4().hex[:8]}"
    try:
        mongo.start()
        with procfile_processes(["web"], env, tmp_path) as processes:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + STARTUP_TIMEOUT_S
            while not _answers(url + "/health/live"):
                assert processes["web"].alive() and time.monotonic() < deadline, "web did not start"
                time.sleep(0.1)
            response = requests.get(url + path, headers={"X-Request-ID": request_id, **AUTH}, timeout=5)
            assert response.status_code == 200 and response.headers["X-Request-ID"] == request_id
        text = processes["web"].log_text()  # after the stop: gunicorn's shutdown lines included
    finally:
        mongo.close()
    # Every line gunicorn and the app wrote is JSON (the first is the harness's "$ command" line).
    lines = [orjson.loads(line) for line in text.splitlines() if line.strip() and not line.startswith("$ ")]
    access = [line for line in lines if line["logger"] == "jollyjet.access" and line.get("request_id") == request_id]
    assert [(line["path"], line["status"]) for line in access] == [("/api/v1/products/count", 200)]
    assert sum("/api/v1/products/count" in line for line in text.splitlines()) == 1  # no gunicorn access line
    booted = [line for line in lines if line["logger"] == "gunicorn.error" and "Booting worker" in line["message"]]
    assert len(booted) == 2  # each of the two workers' boot, once
    assert TOKEN not in text


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except (requests.ConnectionError, requests.Timeout):
        return False
