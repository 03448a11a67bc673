"""The stack under test: a real redis-server, the MongoDB (nx-27017 or MONGODB_URI), and gunicorn.

gunicorn runs the Procfile's `web` line (workers and threads from WEB_CONCURRENCY and
WEB_THREADS, as in production) with one change: the app target `app:app` becomes
`bench.wsgi:app`, which wraps the same app (or the naive or floor app) in the
counting middleware.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import redis
from pymongo import MongoClient

from bench import catalog
from bench.floor_app import FLOOR_PREFIX
from tests.support.mongo_server import MongoForTests, mongo_for_tests, unique_database_name
from tests.support.processes import stop_process
from tests.support.procfile import REPO_ROOT, bind_to_loopback, command_argv, procfile_env, read_procfile
from tests.support.redis_server import RedisServer, free_port

WSGI_TARGET = "bench.wsgi:app"


@dataclass(frozen=True)
class WebSettings:
    """How gunicorn runs: the Procfile's knobs."""

    workers: int = 2
    threads: int = 4
    access_log: bool = True


def web_argv(env: Mapping[str, str]) -> tuple[list[str], str]:
    """The Procfile's web argv with bench.wsgi:app as the target; also returns the original target."""
    argv = bind_to_loopback(command_argv(read_procfile()["web"], env))
    targets = [i for i, arg in enumerate(argv) if ":" in arg and not arg.startswith("-") and "/" not in arg]
    targets = [i for i in targets if argv[i - 1] not in ("--bind", "-b")]
    if len(targets) != 1:
        raise RuntimeError(f"cannot find the app target in the Procfile's web line: {shlex.join(argv)}")
    original, argv[targets[0]] = argv[targets[0]], WSGI_TARGET
    return argv, original


class Web:
    """One gunicorn (master and workers) serving one mode."""

    def __init__(self, process: subprocess.Popen[bytes], url: str, counters: Path, log: Path) -> None:
        self.process = process
        self.url = url
        self.counters = counters
        self.log = log

    def pids(self) -> list[int]:
        """The master and its workers."""
        pids = [self.process.pid]
        task_dir = Path(f"/proc/{self.process.pid}/task")
        for task in task_dir.glob("*/children") if task_dir.exists() else []:
            pids.extend(int(p) for p in task.read_text().split())
        return pids

    def stop(self) -> None:
        """SIGTERM the master (it stops its workers), SIGKILL the group if it hangs."""
        stop_process(self.process, timeout_s=15)

    def log_tail(self, lines: int = 40) -> str:
        """The end of gunicorn's log."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


class Stack:
    """Redis and MongoDB for the whole run; a database and a gunicorn per mode."""

    def __init__(self, workdir: Path, token: str) -> None:
        self.workdir = workdir
        self.token = token
        self.redis_server = RedisServer()
        self.mongo: MongoForTests = mongo_for_tests()

    def start(self) -> None:
        """Start redis-server and the MongoDB (unless MONGODB_URI names a real one)."""
        self.redis_server.start()
        self.mongo.start()

    def close(self) -> None:
        """Stop everything this stack started; drop its databases."""
        try:
            self.mongo.close()
        finally:
            self.redis_server.close()

    def redis(self) -> redis.Redis:
        """A plain client on the bench's redis-server."""
        return self.redis_server.client()

    def server_pids(self) -> dict[str, int]:
        """redis-server's and (when started here) nx-27017's process ids."""
        pids = {}
        if self.redis_server.process is not None:
            pids["redis"] = self.redis_server.process.pid
        process = getattr(self.mongo, "process", None)
        if process is not None:
            pids["mongodb"] = process.pid
        return pids

    def seed_database(self, plan: catalog.SeedPlan, seed: int) -> tuple[str, float]:
        """A new database holding the plan's products; returns its name and the seconds taken."""
        started = time.monotonic()
        database = unique_database_name("jj_bench")
        client: MongoClient[dict[str, Any]] = MongoClient(self.mongo.uri_for(database), tz_aware=True)
        try:
            catalog.seed(client[database], plan, seed)
        finally:
            client.close()
        return database, time.monotonic() - started

    def store_floor_bodies(self, plan: catalog.SeedPlan, seed: int) -> int:
        """Each product's API body, rendered once, under the floor app's keys; returns how many."""
        r = self.redis()
        try:
            pipe = r.pipeline(transaction=False)
            stored = 0
            for doc in catalog.documents(plan, seed):
                pipe.set(FLOOR_PREFIX + str(doc["_id"]), orjson.dumps(catalog.to_api(doc)))
                stored += 1
            pipe.execute()
        finally:
            r.close()
        return stored

    def start_web(self, name: str, app: str, database: str, web: WebSettings, extra_env: Mapping[str, str]) -> Web:
        """gunicorn for one mode; returns once every worker has loaded the app and answers."""
        port = free_port()
        counters = self.workdir / name / "counters"
        counters.mkdir(parents=True)
        env = procfile_env(
            PORT=str(port),
            MONGODB_URI=self.mongo.uri_for(database),
            REDIS_URL=self.redis_server.url,
            JOLLYJET_ENV="production",
            JOLLYJET_API_TOKENS=self.token,
            WEB_CONCURRENCY=str(web.workers),
            WEB_THREADS=str(web.threads),
            BENCH_APP=app,
            BENCH_COUNTERS=str(counters),
            PYTHONPATH=str(REPO_ROOT),
            **dict(extra_env),
        )
        if not web.access_log:
            env["JOLLYJET_LOG_LEVEL"] = "WARNING"  # the service's one access line per request is an INFO line
        argv, original = web_argv(env)
        env["BENCH_TARGET"] = original
        log = self.workdir / name / "gunicorn.log"
        with log.open("wb") as out:
            out.write(f"$ {shlex.join(argv)}\n".encode())
            out.flush()
            process = subprocess.Popen(
                argv, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        server = Web(process, f"http://127.0.0.1:{port}", counters, log)
        try:
            _wait_ready(server, web.workers)
        except BaseException:
            server.stop()
            raise
        return server


def _wait_ready(web: Web, workers: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if web.process.poll() is not None:
            raise RuntimeError(f"gunicorn exited ({web.process.returncode}):\n{web.log_tail()}")
        if len(list(web.counters.glob("*.counters"))) >= workers:
            try:
                with urllib.request.urlopen(web.url + "/health/live", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
        time.sleep(0.1)
    raise RuntimeError(f"gunicorn did not become ready within {timeout_s} s:\n{web.log_tail()}")


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
