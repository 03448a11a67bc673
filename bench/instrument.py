"""What the benchmark counts per request, from outside the app under test.

A counting WSGI middleware classifies each request (product/list/count read, write,
other, or the stale checker's own) and charges to it the MongoDB commands (a pymongo
command listener) and Redis round trips (a wrapper of redis-py's one socket-write
method: a pipeline or a script call is one round trip) that the serving thread sent.
Counts go to a memory-mapped file per worker (bench/counters.py). install() must run
before the app builds its MongoDB client: global listeners apply to clients created
afterwards.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pymongo import monitoring
from redis.connection import AbstractConnection

from bench.counters import CounterFile

# Connection handshakes, monitoring and session clean-up are not queries.
_NOT_QUERIES = frozenset({"hello", "ismaster", "isMaster", "ping", "endSessions", "saslStart", "saslContinue"})
_request = threading.local()


class _Counters:
    """The worker's counter file, opened in the worker itself (after gunicorn's fork)."""

    def __init__(self) -> None:
        self._file: CounterFile | None = None
        self._pid = -1

    def get(self) -> CounterFile:
        if self._pid != os.getpid():
            self._file = CounterFile(Path(os.environ["BENCH_COUNTERS"]))
            self._pid = os.getpid()
        assert self._file is not None
        return self._file


COUNTERS = _Counters()


class QueryCounter(monitoring.CommandListener):
    """Counts MongoDB commands; pymongo calls started() in the thread that sends the command."""

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        """One command sent: charge it to the request this thread is serving."""
        if event.command_name in _NOT_QUERIES:
            return
        if getattr(_request, "commands", None) is None:
            COUNTERS.get().add("db_commands_outside_requests")
        else:
            _request.commands += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        """Nothing to count."""

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        """Nothing to count (the command was already counted when sent)."""


def count_redis_round_trips() -> None:
    """Wrap redis-py's socket write so each one is charged to the request being served."""
    original = AbstractConnection.send_packed_command

    def send_packed_command(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        if getattr(_request, "round_trips", None) is None:
            COUNTERS.get().add("redis_round_trips_outside_requests")
        else:
            _request.round_trips += 1
        original(self, command, check_health)

    AbstractConnection.send_packed_command = send_packed_command  # type: ignore[method-assign]


def request_kind(environ: dict[str, Any]) -> str:
    """product, list, count (reads), write, other, or checker (the stale checker's own traffic)."""
    if environ.get("HTTP_X_BENCH_ROLE") == "checker":
        return "checker"
    if environ["REQUEST_METHOD"] not in ("GET", "HEAD"):
        return "write"
    path = environ.get("PATH_INFO", "")
    if path == "/api/v1/products":
        return "list"
    if path == "/api/v1/products/count":
        return "count"
    if path.startswith("/api/v1/products/"):
        return "product"
    return "other"


class CountingMiddleware:
    """Counts each request's kind, MongoDB commands, status and X-Cache verdict."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """Serve the request, then add its counts (Flask has built the whole response by then)."""
        kind = request_kind(environ)
        COUNTERS.get().add("requests_started")
        seen: dict[str, str] = {}

        def recording_start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            seen["status"] = status
            seen["x_cache"] = next((v for k, v in headers if k.lower() == "x-cache"), "")
            return start_response(status, headers, exc_info)

        _request.commands = _request.round_trips = 0
        try:
            body = self.app(environ, recording_start_response)
        finally:
            commands, round_trips = _request.commands, _request.round_trips
            _request.commands = _request.round_trips = None
            counters = COUNTERS.get()
            counters.add(f"{kind}.requests")
            counters.add(f"{kind}.db_commands", commands)
            counters.add(f"{kind}.redis_round_trips", round_trips)
            if commands == 0:
                counters.add(f"{kind}.no_db")
                counters.add(f"{kind}.no_db_redis_round_trips", round_trips)
            if seen.get("status", "500").startswith("5"):
                counters.add(f"{kind}.server_errors")
            verdict = seen.get("x_cache", "").lower()
            if verdict in ("hit", "miss", "bypass"):
                counters.add(f"{kind}.x_cache_{verdict}")
        return body


def install() -> None:
    """Register the MongoDB listener and the Redis wrapper, and open this worker's counter file."""
    monitoring.register(QueryCounter())
    count_redis_round_trips()
    COUNTERS.get()  # the file exists once the worker has loaded the app: the runner waits for it
