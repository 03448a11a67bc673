"""`celery -A tasks worker|beat` on the in-process MongoDB stand-in next to a shared Redis: refused, with the reason."""

from __future__ import annotations

import subprocess

import pytest

from tests.support.procfile import REPO_ROOT, VENV_BIN, procfile_env
from tests.support.redis_server import free_port

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("command", ["worker", "beat"])
def test_separate_process_on_mongomock_refuses_to_start(command: str) -> None:
    # Nothing listens on the port: the refusal comes before any connection.
    env = procfile_env(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    result = subprocess.run(
        [str(VENV_BIN / "celery"), "-A", "tasks", command],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "refusing to start: MONGODB_URI" in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
