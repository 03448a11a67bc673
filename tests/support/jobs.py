"""Helpers for the job tests: run a job through the admin API, and run `celery -A tasks ...` processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient

from tests.conftest import TOKEN
from tests.support.processes import stop_process

AUTH = {"Authorization": f"Bearer {TOKEN}"}
REPO_ROOT = Path(__file__).resolve().parents[2]
# Variables a developer's shell may hold that would leak into a child process's settings.
_SETTINGS_PREFIXES = ("JOLLYJET_", "CELERY_", "REDIS_URL", "MONGODB_URI")


def wait_for_task(client: FlaskClient, location: str, timeout_s: float = 10.0) -> dict[str, Any]:
    """Poll GET /api/v1/tasks/<id> until the task finished (bounded); asserts SUCCESS and returns the body."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = client.get(location, headers=AUTH)
        assert response.status_code == 200, response.json
        body: dict[str, Any] = response.json
        if body["state"] in ("SUCCESS", "FAILURE"):
            break
        if time.monotonic() >= deadline:
            raise AssertionError(f"task still {body['state']} after {timeout_s} s: {body}")
        time.sleep(0.05)
    assert body["state"] == "SUCCESS", body
    return body


def run_job(client: FlaskClient, job: str, timeout_s: float = 10.0) -> dict[str, Any]:
    """POST /api/v1/cache/<job> and wait for the worker to finish it; returns the task body."""
    enqueued = client.post(f"/api/v1/cache/{job}", headers=AUTH)
    assert enqueued.status_code == 202, enqueued.json
    assert enqueued.json["job"] == job
    task = wait_for_task(client, enqueued.headers["Location"], timeout_s)
    assert task["id"] == enqueued.json["id"] and task["job"] == job
    return task


def celery_env(redis_url: str, mongodb_uri: str, key_prefix: str, queue: str, **extra: str) -> dict[str, str]:
    """Environment of a `celery -A tasks` child: testing settings on this Redis, MongoDB, prefix and queue."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SETTINGS_PREFIXES)}
    env.update(
        REDIS_URL=redis_url,
        # A server the processes share: a worker or beat refuses the in-process store.
        MONGODB_URI=mongodb_uri,
        JOLLYJET_ENV="testing",
        JOLLYJET_API_TOKENS=TOKEN,
        JOLLYJET_CACHE_KEY_PREFIX=key_prefix,
        CELERY_QUEUE=queue,
        JOLLYJET_LOG_LEVEL="INFO",
    )
    env.update(extra)
    return env


@contextmanager
def celery_process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`celery -A tasks <args>` from the repository root, output to log; always stopped on exit."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tasks", *args],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            yield process
        finally:
            stop_process(process)
