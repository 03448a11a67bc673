"""The Procfile's processes on a private Redis and store, with the metrics exporters on free loopback ports."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support.mongo_server import mongo_for_tests, unique_database_name
from tests.support.procfile import ProcfileProcess, procfile_env, procfile_processes
from tests.support.redis_server import RedisServer, free_port

T = TypeVar("T")
TOKEN = f"mon-{secrets.token_hex(12)}"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ACCESS_LOG_FORMAT = 'pid=%(p)s "%(r)s" %(s)s'


@dataclass
class MonitoredStack:
    """Running processes and where their metrics are."""

    url: str
    worker_metrics_url: str
    beat_metrics_url: str
    processes: dict[str, ProcfileProcess]
    redis: RedisServer

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        """A GET on a fresh connection (either gunicorn worker may accept it)."""
        return requests.get(self.url + path, timeout=5, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        """A POST with the admin token, on a fresh connection."""
        return requests.post(self.url + path, headers=AUTH, timeout=5, **kwargs)

    def wait_for(self, check: Callable[[], T | None], what: str, timeout_s: float = 20) -> T:
        """Poll check() until it returns a value (bounded); fails at once if a process exited."""
        deadline = time.monotonic() + timeout_s
        while True:
            exited = [p.name for p in self.processes.values() if not p.alive()]
            assert not exited, f"{exited} exited while waiting for {what}"
            value = check()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise AssertionError(f"no {what} within {timeout_s} s")
            time.sleep(0.05)

    def ready(self) -> bool:
        """The web answers /health/ready with 200."""
        try:
            return self.get("/health/ready").status_code == 200
        except requests.ConnectionError:
            return False


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """{(sample name, labels): value} of one scrape."""
    text = requests.get(url, timeout=5).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Mapping[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    """One sample's value (KeyError when the exposition lacks it)."""
    return samples[(name, frozenset(labels.items()))]


@contextmanager
def monitored_stack(tmp_path: Path, names: list[str], **extra_env: str) -> Iterator[MonitoredStack]:
    """Redis, the store, then the Procfile lines `names`; everything stopped afterwards, even on failure."""
    mongo = mongo_for_tests()
    redis = RedisServer()
    port, worker_port, beat_port = free_port(), free_port(), free_port()
    unique = uuid.uuid4().hex[:10]
    try:
        redis.start()
        mongo.start()
        env = procfile_env(
            PORT=str(port),
            MONGODB_URI=mongo.uri_for(unique_database_name("jj_mon")),
            REDIS_URL=redis.url,
            JOLLYJET_ENV="testing",
            JOLLYJET_API_TOKENS=TOKEN,
            JOLLYJET_CACHE_KEY_PREFIX=f"mon{unique}",
            CELERY_QUEUE=f"mon-{unique}",
            JOLLYJET_LOG_LEVEL="INFO",
            JOLLYJET_WORKER_METRICS_ADDRESS=f"127.0.0.1:{worker_port}",
            JOLLYJET_BEAT_METRICS_ADDRESS=f"127.0.0.1:{beat_port}",
            JOLLYJET_JOBS_OFF="warm",
            # The 100 ms production default turns a Redis reply delayed by a busy test machine into
            # a BYPASS read; these tests count hits exactly (the fault tests are about timeouts).
            JOLLYJET_REDIS_TIMEOUT_MS="2000",
            WEB_CONCURRENCY="2",
            CELERY_CONCURRENCY="2",
            CELERY_BEAT_SCHEDULE=str(tmp_path / "beat-schedule"),
            # gunicorn's access log (off in the Procfile) as a test instrument: it names the serving worker.
            GUNICORN_CMD_ARGS=f"--no-control-socket --access-logfile - --access-logformat '{ACCESS_LOG_FORMAT}'",
            **extra_env,
        )
        with procfile_processes(names, env, tmp_path) as processes:
            stack = MonitoredStack(
                f"http://127.0.0.1:{port}",
                f"http://127.0.0.1:{worker_port}/metrics",
                f"http://127.0.0.1:{beat_port}/metrics",
                processes,
                redis,
            )
            if "web" in names:
                stack.wait_for(stack.ready, "ready web process")
            yield stack
    finally:
        redis.close()
        mongo.close()
