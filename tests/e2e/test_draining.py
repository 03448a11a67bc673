"""A web process told to stop (SIGTERM) fails readiness until it exits, on the real gunicorn (the Procfile's web).

One worker with two threads (gthread, as in production), so the order is fixed without any
timing: two POSTs whose bodies are held back keep both threads busy; a readiness probe sent
on a kept-alive connection waits behind them; SIGTERM arrives; only once the worker says it
is draining do the POSTs get the rest of their bodies. The probe is then answered 503 "draining" by the process that
is still finishing its requests, and the process exits cleanly afterwards.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from tests.support.factories import product_payload
from tests.support.procfile import ProcfileProcess, procfile_env, procfile_processes
from tests.support.redis_server import free_port

pytestmark = pytest.mark.e2e
TOKEN = "e2e-token-0123456789abcdef"
DRAINING_LINE = "draining: /health/ready answers 503 until it exits"


def wait_for(process: ProcfileProcess, check: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
    """Poll check() (bounded); fail at once if the process exited."""
    deadline = time.monotonic() + timeout_s
    while not check():
        assert process.alive(), f"exited while waiting for {what}:\n{process.log_text()}"
        assert time.monotonic() < deadline, f"no {what} within {timeout_s} s:\n{process.log_text()}"
        time.sleep(0.05)


def answers_ready(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/health/ready", timeout=5).status_code == 200
    except requests.RequestException:
        return False


def test_readiness_answers_503_from_sigterm_until_the_worker_exits(tmp_path: Path) -> None:
    port = free_port()
    env = procfile_env(
        PORT=str(port),
        WEB_CONCURRENCY="1",
        WEB_THREADS="2",  # one thread would make gunicorn use its sync worker, which keeps no connection
        JOLLYJET_API_TOKENS=TOKEN,
        # debug: pre_request logs each request as its thread takes it (how the test knows the
        # POST holds the thread); a long keep-alive, so the probe's connection outlives a slow start.
        GUNICORN_CMD_ARGS="--no-control-socket --log-level debug --keep-alive 60",
    )
    with procfile_processes(["web"], env, tmp_path) as processes:
        web = processes["web"]
        wait_for(web, lambda: answers_ready(port), "GET /health/ready 200")

        probe = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        probe.request("GET", "/health/ready")
        first = probe.getresponse()
        assert first.status == 200 and json.loads(first.read())["status"] == "ok"

        assert "Using worker: gthread" in web.log_text()
        slow = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(2)]
        bodies = [json.dumps(product_payload(category="drain")).encode() for _ in slow]
        for sock, body in zip(slow, bodies, strict=True):
            head = (
                f"POST /api/v1/products HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
            sock.sendall(head + body[:10])
        wait_for(web, lambda: web.log_text().count("POST /api/v1/products") == 2, "both POSTs in the worker's threads")

        probe.request("GET", "/health/ready")  # queued behind the POSTs: no thread is free
        web.process.send_signal(signal.SIGTERM)
        wait_for(web, lambda: DRAINING_LINE in web.log_text(), "the worker's draining line")

        for sock, body in zip(slow, bodies, strict=True):
            sock.sendall(body[10:])
            created = sock.recv(65536).decode("latin-1")
            assert created.startswith("HTTP/1.1 201"), created  # requests in flight finish
            sock.close()

        draining = probe.getresponse()
        assert draining.status == 503
        assert json.loads(draining.read()) == {
            "status": "draining",
            "mongodb": "ok",
            "redis": "ok",
            "breaker": "closed",
        }
        assert draining.getheader("Connection") == "close"  # begun while stopping: no keep-alive
        probe.close()

        assert web.process.wait(timeout=30) == 0, web.log_text()
    log = web.log_text()
    # Liveness was never involved: the worker drained and exited on its own, not on a kill.
    assert log.index(DRAINING_LINE) < log.index("Worker exiting"), log
    assert "Shutting down: Master" in log and "SIGKILL" not in log
