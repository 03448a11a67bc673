"""`python -m jollyjet` (what `scripts/serve` runs), as a new user meets it.

gunicorn with one worker and threads, demo data, embedded jobs that really run; nothing
left in the temp directory after it stops; one clear line when MongoDB is not there.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.support.processes import stop_process
from tests.support.procfile import REPO_ROOT, procfile_env
from tests.support.redis_server import free_port

pytestmark = pytest.mark.e2e
DEV_AUTH = {"Authorization": "Bearer dev-token"}


def _wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes], Path, Path]]:
    port = free_port()
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    log = tmp_path / "serve.log"
    env = procfile_env(TMPDIR=str(tmp))
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "jollyjet", "--port", str(port), "--threads", "4"],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until(lambda: requests.get(f"{base}/health/live", timeout=5).ok, 90, "the server")
        yield base, process, tmp, log
    finally:
        stop_process(process)


def test_serves_with_gunicorn_runs_jobs_and_leaves_no_temp_files(
    serve: tuple[str, subprocess.Popen[bytes], Path, Path],
) -> None:
    base, process, tmp, log = serve
    request_id = f"serve-once-{uuid.uuid4().hex}"
    response = requests.get(
        f"{base}/api/v1/products/count", headers={"X-Request-ID": request_id, **DEV_AUTH}, timeout=10
    )
    assert response.headers["Server"].startswith("gunicorn")  # was Werkzeug's development server
    assert response.json() == {"count": 48}
    enqueued = requests.post(f"{base}/api/v1/cache/warm", headers=DEV_AUTH, timeout=10)
    assert enqueued.status_code == 202, enqueued.text
    task_url = f"{base}{enqueued.headers['Location']}"
    _wait_until(
        lambda: requests.get(task_url, headers=DEV_AUTH, timeout=10).json()["state"] == "SUCCESS",
        60,
        "the embedded worker to run the warm job",
    )
    assert "jobs: Celery worker and beat run as threads of this process" in log.read_text()
    stop_process(process)
    assert process.returncode == 0, log.read_text()[-3000:]
    assert sorted(p.name for p in tmp.iterdir()) == []  # was a jollyjet-beat-* folder per run

    # Every line once, through the one redacting handler (was twice: basicConfig's unredacted
    # handler beside the app's), and one access line per request (was also gunicorn's).
    text = log.read_text()
    [access] = [line for line in text.splitlines() if request_id in line and " jollyjet.access " in line]
    assert " INFO jollyjet.access " in access and "path=/api/v1/products/count status=200" in access
    assert [line for line in text.splitlines() if "/api/v1/products/count" in line] == [access]
    assert text.count("embedded mode: Celery worker and beat run as threads") == 1
    assert len(re.findall(r" INFO gunicorn\.error: Booting worker with pid: \d+", text)) == 1  # in the same format
    assert "dev-token" not in text and "development token '[REDACTED]'" in text


def test_help_names_the_command_and_every_default() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "jollyjet", "--help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    assert result.stdout.startswith("usage: python -m jollyjet")  # was "usage: __main__.py"
    for option in ("--host", "--port", "--threads", "--no-seed"):
        line = next(line for line in result.stdout.splitlines() if line.strip().startswith(option))
        assert len(line.split(maxsplit=2)) == 3, line  # option, metavar or help: never bare
    assert result.stdout.count("(default:") == 4


def test_unreachable_mongodb_is_one_line_and_a_failure_exit() -> None:
    port = free_port()
    env = procfile_env(MONGODB_URI=f"mongodb://127.0.0.1:{port}/jj", JOLLYJET_MONGODB_TIMEOUT_MS="300")
    result = subprocess.run(
        [sys.executable, "-m", "jollyjet", "--port", str(free_port())],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # was about 100 lines of traceback
    assert "MONGODB_URI" in lines[0] and f"127.0.0.1:{port}" in lines[0]
