"""The image's and compose's healthchecks, run as Docker would run them, against the Procfile's processes.

Docker is not on the test machines, so the commands are taken from the Dockerfile and
docker-compose.yml and run here, in the repository root (the image's WORKDIR), with
HOSTNAME set as Docker sets it (the container's hostname, which is also the node name
Celery gives the worker and beat). Each passes while its process runs and fails once
it has stopped.
"""

from __future__ import annotations

import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.support.deploy_files import compose, compose_healthcheck_argv, dockerfile_healthcheck, duration_s
from tests.support.mongo_server import mongo_for_tests, unique_database_name
from tests.support.procfile import REPO_ROOT, ProcfileProcess, procfile_env, procfile_processes, stop_processes
from tests.support.redis_server import RedisServer, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
TOKEN = "e2e-token-0123456789abcdef"


@pytest.fixture
def processes(
    private_redis: RedisServer, tmp_path: Path
) -> Iterator[tuple[dict[str, ProcfileProcess], dict[str, str]]]:
    """web, worker and beat from the Procfile on a real Redis and MongoDB store, and their environment."""
    mongo = mongo_for_tests()
    unique = uuid.uuid4().hex[:10]
    env = procfile_env(
        PORT=str(free_port()),
        MONGODB_URI=mongo.uri_for(unique_database_name("jj_health")),
        REDIS_URL=private_redis.url,
        JOLLYJET_ENV="testing",
        JOLLYJET_API_TOKENS=TOKEN,
        JOLLYJET_CACHE_KEY_PREFIX=f"hc{unique}",
        CELERY_QUEUE=f"hc-{unique}",
        WEB_CONCURRENCY="1",
        CELERY_CONCURRENCY="1",
        CELERY_BEAT_SCHEDULE=str(tmp_path / "beat-schedule"),
        GUNICORN_CMD_ARGS="--no-control-socket",
        HOSTNAME=socket.gethostname(),  # Docker sets it in every container; sh does not
    )
    try:
        mongo.start()
        with procfile_processes(["web", "worker", "beat"], env, tmp_path) as started:
            yield started, env
    finally:
        mongo.close()


def wait_for(
    processes: Mapping[str, ProcfileProcess], check: Callable[[], bool], what: str, timeout_s: float = 60
) -> None:
    """Poll check() (bounded); fail at once if a process exited."""
    deadline = time.monotonic() + timeout_s
    while not check():
        exited = [p.name for p in processes.values() if not p.alive()]
        assert not exited, f"{exited} exited while waiting for {what}"
        assert time.monotonic() < deadline, f"no {what} within {timeout_s} s"
        time.sleep(0.1)


def run_check(argv: list[str], timeout: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """Run one healthcheck command as Docker would: in the image's WORKDIR, killed at its timeout."""
    return subprocess.run(
        argv, cwd=REPO_ROOT, env=dict(env), capture_output=True, text=True, timeout=duration_s(timeout)
    )


def run_checks(
    checks: Mapping[str, tuple[list[str], str]], env: Mapping[str, str]
) -> dict[str, subprocess.CompletedProcess[str]]:
    with ThreadPoolExecutor(len(checks)) as pool:
        futures = {name: pool.submit(run_check, argv, timeout, env) for name, (argv, timeout) in checks.items()}
        return {name: future.result() for name, future in futures.items()}


def ready(env: Mapping[str, str]) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{env['PORT']}/health/ready", timeout=5).status_code == 200
    except requests.RequestException:
        return False


def test_each_healthcheck_passes_while_its_process_runs_and_fails_once_it_stopped(
    processes: tuple[dict[str, ProcfileProcess], dict[str, str]],
) -> None:
    started, env = processes
    services = compose()["services"]
    image_options, image_check = dockerfile_healthcheck()
    checks = {name: (compose_healthcheck_argv(name), services[name]["healthcheck"]["timeout"]) for name in started}
    checks["image"] = (image_check, image_options["timeout"])

    wait_for(started, lambda: ready(env), "GET /health/ready 200")
    wait_for(started, lambda: " ready." in started["worker"].log_text(), "the worker's ready line")
    wait_for(started, lambda: "beat pidbox: Connected to" in started["beat"].log_text(), "beat's remote control")

    # Each check is its own process, as Docker runs them: all at once (each celery ping takes
    # seconds to start, and a failing one waits out its timeout).
    passing = run_checks(checks, env)
    for name, result in passing.items():
        assert result.returncode == 0, f"{name}: {checks[name][0]}\n{result.stdout}\n{result.stderr[-2000:]}"
        if name in ("worker", "beat"):
            assert "pong" in result.stdout, result.stdout

    stop_processes([started["worker"], started["beat"]])
    for name, result in run_checks({n: checks[n] for n in ("worker", "beat")}, env).items():
        assert result.returncode != 0 and "No nodes replied" in result.stderr, (name, result.stdout, result.stderr)
    stop_processes([started["web"]])
    for name in ("web", "image"):
        assert run_check(*checks[name], env).returncode != 0, name
