"""A small keep-alive HTTP client for the Python-driven parts (checker, probes, smoke run)."""

from __future__ import annotations

import http.client
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class Reply:
    """Status, lower-cased headers and body of one response."""

    status: int
    headers: dict[str, str]
    body: bytes


class HttpClient:
    """One persistent connection; reconnects once when the server closed it."""

    def __init__(self, base_url: str, token: str | None = None, role: str | None = None, timeout_s: float = 30) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.timeout_s = timeout_s
        self.base_headers = {"X-Bench-Role": role} if role else {}
        self.write_headers = {"Content-Type": "application/json"}
        if token:
            self.write_headers["Authorization"] = f"Bearer {token}"
        self._conn: http.client.HTTPConnection | None = None

    def send(self, method: str, path: str, body: bytes | None = None) -> Reply:
        """Send one request and read the whole response."""
        headers = dict(self.base_headers)
        if method != "GET":
            headers.update(self.write_headers)
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
            try:
                self._conn.request(method, path, body=body, headers=headers)
                response = self._conn.getresponse()
                data = response.read()
                return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if attempt == 2 or method != "GET":
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close the connection (the next request opens a new one)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
