"""A web worker SIGKILLed between the MongoDB commit and its cache write: no older version is served after.

The Procfile's web (one gunicorn worker) on nx-27017 and a redis-server, each behind a
fault proxy. A product is cached; a PATCH of it is sent with MongoDB slowed (so the
test sees the commit before the reply arrives) and, once MongoDB holds the new version,
Redis drops everything so the cache write hangs; the worker is SIGKILLed there. Nothing
was recorded (the process died) and the cache write it had sent never arrives. gunicorn
starts a new worker; every read after that must give the version MongoDB holds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests
from bson import ObjectId

from tests.fault.conftest import TOKEN, wait_ready
from tests.support.factories import product_payload
from tests.support.fault_proxy import fault_proxy
from tests.support.mongo_server import mongo_for_tests, unique_database_name
from tests.support.processes import children_of
from tests.support.procfile import procfile_env, procfile_processes
from tests.support.redis_server import RedisServer, free_port

pytestmark = [pytest.mark.fault, pytest.mark.slow]
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MONGO_DELAY_S = 0.4  # each way: the PATCH's command reaches MongoDB 0.4 s late, its reply 0.4 s after that
LOOK_S = 4.0


def test_a_worker_killed_between_commit_and_cache_write_leaves_no_older_version_served(tmp_path: Path) -> None:
    cache = RedisServer()
    mongo = mongo_for_tests()
    database = unique_database_name("jj_killed")
    port = free_port()
    try:
        cache.start()
        mongo.start()
        upstream = mongo.uri_for(database).rsplit(":", 1)[1].split("/", 1)[0]
        with fault_proxy(cache.port) as redis_proxy, fault_proxy(int(upstream)) as mongo_proxy:
            env = procfile_env(
                PORT=str(port),
                MONGODB_URI=f"mongodb://127.0.0.1:{mongo_proxy.port}/{database}",
                REDIS_URL=redis_proxy.url,
                JOLLYJET_ENV="testing",
                JOLLYJET_API_TOKENS=TOKEN,
                JOLLYJET_CACHE_KEY_PREFIX=f"killed{uuid.uuid4().hex[:8]}",
                JOLLYJET_LOG_LEVEL="WARNING",
                # The cache write must hang (not fail fast) while the worker is killed.
                JOLLYJET_REDIS_TIMEOUT_MS="5000",
                JOLLYJET_MONGODB_TIMEOUT_MS="2000",
                JOLLYJET_JOBS_OFF="audit,cleanup",
                WEB_CONCURRENCY="1",
            )
            with procfile_processes(["web"], env, tmp_path) as processes:
                url = f"http://127.0.0.1:{port}"
                wait_ready(url, processes)
                created = requests.post(f"{url}/api/v1/products", json=product_payload(), headers=AUTH, timeout=10)
                assert created.status_code == 201
                pid = created.json()["id"]
                for _ in range(2):
                    reply = requests.get(f"{url}/api/v1/products/{pid}", timeout=10)
                assert reply.headers["X-Cache"] == "HIT" and reply.json()["version"] == 1

                products = mongo.client()[database]["products"]
                mongo_proxy.delay(MONGO_DELAY_S)

                def send_patch() -> None:
                    # Its worker is killed mid-request: the client hears nothing back.
                    with contextlib.suppress(requests.RequestException):
                        requests.patch(
                            f"{url}/api/v1/products/{pid}", json={"price": "77.00"}, headers=AUTH, timeout=30
                        )

                patch = threading.Thread(target=send_patch, daemon=True)
                patch.start()
                deadline = time.monotonic() + 10
                while (doc := products.find_one({"_id": _oid(pid)})) is None or doc["version"] < 2:
                    assert time.monotonic() < deadline, "the PATCH never committed"
                    time.sleep(0.005)
                redis_proxy.drop()  # the reply is still on its way: the cache write will hang, and never arrive
                time.sleep(2 * MONGO_DELAY_S + 0.3)
                master = processes["web"].process.pid
                workers = children_of(master)
                assert workers, "no gunicorn worker to kill"
                for worker in workers:
                    os.kill(worker, signal.SIGKILL)
                redis_proxy.heal()
                mongo_proxy.heal()
                wait_ready(url, processes)

                stale: list[str] = []
                reads = 0
                deadline = time.monotonic() + LOOK_S
                while time.monotonic() < deadline:
                    reply = requests.get(f"{url}/api/v1/products/{pid}", timeout=10)
                    truth = products.find_one({"_id": _oid(pid)})
                    assert truth is not None
                    reads += 1
                    if reply.status_code != 200 or reply.json()["version"] != truth["version"]:
                        stale.append(f"{reply.status_code} {reply.headers.get('X-Cache')} {reply.text[:80]}")
                print(f"{reads} reads after the kill, {len(stale)} differed from MongoDB (version 2)")
                assert stale == [], stale[:5]
    finally:
        cache.close()
        mongo.close()


def _oid(product_id: str) -> ObjectId:
    return ObjectId(product_id)
