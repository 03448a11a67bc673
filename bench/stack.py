"""The stack under test: MongoDB (nx-27017 or MONGODB_URI), and per mode a redis-server and a gunicorn.

gunicorn runs the Procfile's `web` line (WEB_CONCURRENCY, WEB_THREADS, gunicorn.conf.py, the
service's own access line) as deployed; for the naive and floor apps only the target changes.
"""

from __future__ import annotations

import shlex
import subprocess
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from pymongo import MongoClient

from bench import workload
from bench.apps import FLOOR_PREFIX
from tests.support.mongo_server import MongoForTests, mongo_for_tests, unique_database_name
from tests.support.processes import children_of, stop_process
from tests.support.procfile import REPO_ROOT, bind_to_loopback, procfile_env, start_process
from tests.support.redis_server import RedisServer, free_port

APPS = {"naive": "bench.apps:naive_app()", "floor": "bench.apps:floor_app()"}


def web_argv(argv: list[str], target: str | None = None) -> list[str]:
    """The Procfile's web argv on the loopback, its app target (`app:app`) replaced by target."""
    argv = bind_to_loopback(argv)
    found = [i for i, a in enumerate(argv) if ":" in a and not a.startswith("-") and "/" not in a]
    found = [i for i in found if argv[i - 1] not in ("--bind", "-b")]
    if len(found) != 1:
        raise RuntimeError(f"cannot find the app target in the Procfile's web line: {shlex.join(argv)}")
    argv[found[0]] = target or argv[found[0]]
    return argv


@dataclass
class Web:
    """One mode: its gunicorn (master and workers) and its redis-server."""

    process: subprocess.Popen[bytes]
    url: str
    redis_server: RedisServer
    metrics_dir: Path

    def pids(self) -> list[int]:
        """gunicorn's master and workers."""
        return [self.process.pid, *children_of(self.process.pid)]

    def stop(self) -> None:
        """SIGTERM the master (it stops its workers, SIGKILL if it hangs), then the redis-server."""
        try:
            stop_process(self.process, timeout_s=15)
        finally:
            self.redis_server.close()


class Stack:
    """MongoDB for the whole run; a database, a redis-server and a gunicorn per mode."""

    def __init__(self, workdir: Path, token: str) -> None:
        self.workdir, self.token = workdir, token
        self.mongo: MongoForTests = mongo_for_tests()  # nx-27017, or MONGODB_URI's server: start() and close()

    def seed_database(self, plan: workload.SeedPlan | None, seed: int) -> tuple[str, float]:
        """A new database holding the plan's products (none without a plan); its name and the seconds taken."""
        started, database = time.monotonic(), unique_database_name("jj_bench")
        if plan is None:
            return database, 0.0
        client: MongoClient[dict[str, Any]] = MongoClient(self.mongo.uri_for(database), tz_aware=True)
        try:
            workload.seed(client[database], plan, seed)
        finally:
            client.close()
        return database, time.monotonic() - started

    def start_web(
        self, name: str, app: str, database: str, workers: int, threads: int, env: Mapping[str, str], products: int = 0
    ) -> Web:
        """A redis-server and gunicorn for one mode (app: service, naive or floor), answering when returned."""
        server, port = RedisServer(), free_port()
        server.start()
        if app == "floor":  # each product's API body, rendered once, where the floor app reads it
            plan, client = workload.SeedPlan(products, reserve=0, checker=0), server.client()
            pipe = client.pipeline(transaction=False)
            for doc in workload.documents(plan):
                pipe.set(FLOOR_PREFIX + str(doc["_id"]), orjson.dumps(workload.to_api(doc)))
            pipe.execute()
            client.close()
        full_env = procfile_env(
            PORT=str(port),
            MONGODB_URI=self.mongo.uri_for(database),
            REDIS_URL=server.url,
            JOLLYJET_ENV="production",
            JOLLYJET_API_TOKENS=self.token,
            WEB_CONCURRENCY=str(workers),
            WEB_THREADS=str(threads),
            PYTHONPATH=str(REPO_ROOT),
            PROMETHEUS_MULTIPROC_DIR=str(self.workdir / f"{name}.metrics"),  # gunicorn.conf.py empties it
            **env,
        )
        (log_dir := self.workdir / name).mkdir()
        started = start_process("web", full_env, log_dir, lambda argv: web_argv(argv, APPS.get(app)))
        web = Web(started.process, f"http://127.0.0.1:{port}", server, Path(full_env["PROMETHEUS_MULTIPROC_DIR"]))
        try:
            _wait_ready(web, workers, started.log)
        except BaseException:
            web.stop()
            raise
        return web


def _wait_ready(web: Web, workers: int, log: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    answered = 0
    while time.monotonic() < deadline and answered < 3 * workers:  # each worker has loaded the app, likely
        if web.process.poll() is not None:
            raise RuntimeError(f"gunicorn exited ({web.process.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(web.url + "/health/live", timeout=2) as response:
                answered += response.status == 200 and len(web.pids()) > workers
        except OSError:
            time.sleep(0.1)
    if answered < 3 * workers:
        raise RuntimeError(f"gunicorn did not become ready within {timeout_s} s:\n{log.read_text()[-3000:]}")
