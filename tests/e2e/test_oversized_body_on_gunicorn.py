"""An oversized body on the real gunicorn server (the Procfile's web line): 413 and the connection closed.

With keep-alive, the unread rest of the body would be taken for the next request on the
connection. Checked with a raw socket, byte for byte, the way a client meets it.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import pytest
import requests

from tests.support.procfile import ProcfileProcess, procfile_env, start_process, stop_processes
from tests.support.redis_server import free_port

pytestmark = pytest.mark.e2e
TOKEN = "e2e-token-0123456789abcdef"
LIMIT = 65536


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, ProcfileProcess]]:
    port = free_port()
    env = procfile_env(PORT=str(port), WEB_CONCURRENCY="1", WEB_THREADS="2", JOLLYJET_API_TOKENS=TOKEN)
    process = start_process("web", env, tmp_path_factory.mktemp("gunicorn"))
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.alive(), process.log_text()
            try:
                if requests.get(f"http://127.0.0.1:{port}/health/live", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        else:
            raise AssertionError(f"gunicorn did not answer: {process.log_text()}")
        yield port, process
    finally:
        stop_processes([process])


def _read_response(sock: socket.socket) -> bytes:
    """One response (head and Content-Length body) from the socket; whatever came if it closed first."""
    received = b""
    while b"\r\n\r\n" not in received or len(received) < received.index(b"\r\n\r\n") + 4 + _length(received):
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    return received


def _head(response: bytes) -> str:
    return response.split(b"\r\n\r\n", 1)[0].decode("latin-1")


def _length(received: bytes) -> int:
    for line in _head(received).lower().split("\r\n"):
        if line.startswith("content-length:"):
            return int(line.split(":", 1)[1])
    return 0


def _send(sock: socket.socket, request: bytes) -> None:
    # The server may stop reading once it has answered.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        sock.sendall(request)


def _post(length: int, body: bytes) -> bytes:
    head = (
        "POST /api/v1/products HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
    return head.encode() + body


def test_oversized_body_is_a_413_on_a_closed_connection(web: tuple[int, ProcfileProcess]) -> None:
    port, _ = web
    size = 200 * 1024
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        _send(sock, _post(size, b'{"name": "' + b"x" * (size - 12) + b'"}'))
        response = _read_response(sock)
        head = _head(response)
        assert head.startswith("HTTP/1.1 413"), head
        assert "connection: close" in head.lower(), head  # was "keep-alive", on a connection that could not be reused
        assert b"larger than 65536 bytes" in response
        # Closed by the server right after the answer (gunicorn's idle keep-alive timeout is 2 s).
        sock.settimeout(1)
        assert sock.recv(1) == b""


def test_a_body_within_the_limit_keeps_the_connection_usable(web: tuple[int, ProcfileProcess]) -> None:
    port, _ = web
    body = b'{"sku": "KEEP-1", "name": "Mug", "price": "9.50", "category": "kitchen"}'
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        _send(sock, _post(len(body), body))
        head = _head(_read_response(sock))
        assert head.startswith("HTTP/1.1 201") and "connection: keep-alive" in head.lower(), head
        _send(sock, b"GET /api/v1/products/not-an-id HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert _head(_read_response(sock)).startswith("HTTP/1.1 404")  # the next request on the same connection
