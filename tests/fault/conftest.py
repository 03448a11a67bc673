"""The fault suite's stack: the Procfile's web (2 gunicorn workers), worker and beat, on a real
redis-server behind a fault-injecting proxy, a separate broker redis-server, and nx-27017.

One stack per module: starting gunicorn and Celery costs seconds on a busy machine, so
the scenarios run one after the other on it, each with a category of its own and a
fresh ledger, and each leaves Redis healthy for the next (`FaultStack.heal`).
"""

from __future__ import annotations

import os
import secrets
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import requests
from pymongo.collection import Collection

from jollyjet.db import null_or_missing
from jollyjet.settings import REDIS_POOL_TIMEOUT_MS
from tests.support.fault_proxy import FaultProxy, fault_proxy
from tests.support.mongo_server import mongo_for_tests, unique_database_name
from tests.support.procfile import ProcfileProcess, procfile_env, procfile_processes
from tests.support.redis_server import RedisServer, free_port

TOKEN = f"fault-{secrets.token_hex(12)}"
# The timeouts the processes run with; the latency bound asserted is derived from them.
REDIS_TIMEOUT_MS = 100  # socket and connect timeout
POOL_TIMEOUT_MS = REDIS_POOL_TIMEOUT_MS  # a constant of the service, no longer a setting
BREAKER_COOLDOWN_S = 1.0
FENCE_POLL_S = 1.0
STARTUP_TIMEOUT_S = 30.0


@dataclass
class FaultStack:
    """The running processes and handles on what they share."""

    url: str
    processes: dict[str, ProcfileProcess]
    cache: RedisServer
    proxy: FaultProxy
    repairs: Collection[dict[str, object]]
    broker: RedisServer
    paused: bool = False

    def raw(self) -> redis.Redis:
        """A direct client of the cache server (not through the proxy)."""
        return self.cache.client()

    def pause(self) -> None:
        """SIGSTOP the cache server: it keeps its connections and answers nothing."""
        assert self.cache.process is not None
        os.kill(self.cache.process.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """SIGCONT the cache server."""
        assert self.cache.process is not None
        os.kill(self.cache.process.pid, signal.SIGCONT)
        self.paused = False

    def pending_repairs(self) -> int:
        """Failed cache writes not yet replayed."""
        return self.repairs.count_documents({"done_at": null_or_missing()})

    def heal(self) -> None:
        """Whatever the last scenario did: the cache server running and reachable again."""
        if self.paused:
            self.resume()
        self.proxy.heal()
        if self.cache.process is None:
            self.cache.start()
        self.raw().config_set("maxmemory", 0)

    def assert_alive(self) -> None:
        """Every Procfile process is still running."""
        exited = [p.name for p in self.processes.values() if not p.alive()]
        assert not exited, f"{exited} exited (logs below)"


def wait_ready(url: str, stack_processes: dict[str, ProcfileProcess]) -> None:
    """Poll /health/ready until it answers 200 (bounded)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        exited = [p.name for p in stack_processes.values() if not p.alive()]
        assert not exited, f"{exited} exited during start-up"
        try:
            if requests.get(url + "/health/ready", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass  # not listening yet, or still loading the app
        time.sleep(0.1)
    raise AssertionError("the web process never became ready")


@contextmanager
def running_stack(log_dir: Path, **overrides: str) -> Iterator[FaultStack]:
    """Cache Redis (behind the proxy), broker Redis, the store, web + worker + beat; all stopped afterwards."""
    cache, broker = RedisServer(persist=True), RedisServer()
    mongo = mongo_for_tests()
    database = unique_database_name("jj_fault")
    unique = uuid.uuid4().hex[:10]
    port = free_port()
    try:
        cache.start()
        broker.start()
        mongo.start()
        with fault_proxy(cache.port) as proxy:
            env = procfile_env(
                PORT=str(port),
                MONGODB_URI=mongo.uri_for(database),
                REDIS_URL=proxy.url,
                # The broker is another server: the faults hit the cache, and repair jobs still get delivered.
                CELERY_BROKER_URL=broker.url,
                CELERY_RESULT_BACKEND=broker.url,
                JOLLYJET_ENV="testing",
                JOLLYJET_API_TOKENS=TOKEN,
                JOLLYJET_CACHE_KEY_PREFIX=f"fault{unique}",
                CELERY_QUEUE=f"fault-{unique}",
                JOLLYJET_LOG_LEVEL="WARNING",
                JOLLYJET_REDIS_TIMEOUT_MS=str(REDIS_TIMEOUT_MS),
                JOLLYJET_BREAKER_COOLDOWN_S=str(BREAKER_COOLDOWN_S),
                JOLLYJET_CACHE_FENCE_POLL_S=str(FENCE_POLL_S),
                JOLLYJET_REPAIR_INTERVAL_S="2",
                # The point is what the service does without the audit.
                JOLLYJET_JOBS_OFF="audit,cleanup",
                WEB_CONCURRENCY="2",
                CELERY_CONCURRENCY="1",
                CELERY_BEAT_SCHEDULE=str(log_dir / "beat-schedule"),
            )
            env.update(overrides)
            with procfile_processes(["web", "worker", "beat"], env, log_dir) as processes:
                url = f"http://127.0.0.1:{port}"
                wait_ready(url, processes)
                with mongo.client() as client:
                    yield FaultStack(url, processes, cache, proxy, client[database]["cache_repairs"], broker)
    finally:
        if cache.process is not None:
            os.kill(cache.process.pid, signal.SIGCONT)  # a test that failed mid-hang
        cache.close()
        broker.close()
        mongo.close()


@pytest.fixture(scope="module")
def fault_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    """The stack the Redis fault scenarios share."""
    with running_stack(tmp_path_factory.mktemp("fault-stack")) as stack:
        yield stack
