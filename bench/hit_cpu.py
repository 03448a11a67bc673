"""CPU per request, in process: the service's cached GET against the floor's, and a 304 against a 200.

    .venv/bin/python -m bench.hit_cpu [--rounds 10] [--requests 1500] [--conditional]

No HTTP server and no load generator: each app is called as a WSGI callable, one request
after another, and this process's CPU time is divided by the requests served; the minimum
over interleaved rounds is reported, which other work on a shared machine barely moves.
A real redis-server holds the data; the service runs with its production logging (a JSON
access line per request, written to /dev/null here) on the in-process MongoDB stand-in (a
hit never reaches it). What this leaves out (gunicorn's HTTP parsing, sockets) is the same
for every app, so the differences are what the benchmark's per-request CPU is made of.
--conditional: every cached read kind plain (200) and with If-None-Match naming its current
ETag (304), with the bytes each puts on the wire (status line, headers, body).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from werkzeug.test import EnvironBuilder

from bench.stack import TOKEN, service
from tests.support.factories import product_payload
from tests.support.redis_server import RedisServer

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def call(app: WsgiApp, path: str, headers: Mapping[str, str] | None = None) -> tuple[str, int, str, bytes]:
    """One request: status, bytes on the wire (as HTTP/1.1 frames it), ETag, body."""
    seen: dict[str, Any] = {}

    def start(status: str, response_headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        seen["status"], seen["headers"] = status, response_headers

    body = b"".join(app(EnvironBuilder(path=path, headers=list((headers or {}).items())).get_environ(), start))
    head = f"HTTP/1.1 {seen['status']}\r\n" + "".join(f"{n}: {v}\r\n" for n, v in seen["headers"]) + "\r\n"
    return seen["status"], len(head.encode()) + len(body), dict(seen["headers"]).get("ETag", ""), body


def cpu_per_request(
    app: WsgiApp, paths: list[str], requests: int, headers: Mapping[str, Mapping[str, str]] | None = None
) -> float:
    """CPU seconds per request for `requests` calls cycling through paths (headers: a path's request headers)."""
    environs = [EnvironBuilder(path=p, headers=list((headers or {}).get(p, {}).items())).get_environ() for p in paths]
    started = time.process_time()
    for i in range(requests):
        body = app(dict(environs[i % len(environs)]), lambda *_: None)
        b"".join(body)
        getattr(body, "close", lambda: None)()
    return (time.process_time() - started) / requests


@contextmanager
def quiet_service(log_level: str) -> Iterator[tuple[WsgiApp, list[str], str]]:
    """The service with 50 cached products on a redis-server of its own, its log lines sent nowhere;
    yields (app, the products' paths, the Redis URL)."""
    server = RedisServer()
    server.start()
    real_stderr, sys.stderr = sys.stderr, open(os.devnull, "w")  # noqa: SIM115 - the log handler keeps writing to it
    try:
        app, _, _ = service(mongodb_uri="mongomock://localhost/bench", redis_url=server.url, log_level=log_level)
        client, auth = app.test_client(), {"Authorization": f"Bearer {TOKEN}"}
        created = [client.post("/api/v1/products", json=product_payload(), headers=auth).get_json() for _ in range(50)]
        paths = [f"/api/v1/products/{product['id']}" for product in created]
        for path in paths:
            client.get(path)  # every entry cached: the measured reads are hits
        yield app, paths, server.url
    finally:
        sys.stderr.close()
        sys.stderr = real_stderr
        server.close()


def hits(app: WsgiApp, paths: list[str], redis_url: str, rounds: int, requests: int) -> dict[str, float]:
    """The service's product hit and /health/live against the floor's, the same bodies stored as it expects."""
    import redis

    from bench.apps import FLOOR_PREFIX, floor_app

    client = redis.Redis.from_url(redis_url)
    for path in paths:
        client.set(FLOOR_PREFIX + path.rsplit("/", 1)[1], call(app, path)[3])
    floor = floor_app(redis_url)
    cases: dict[str, tuple[WsgiApp, list[str]]] = {
        "service GET /api/v1/products/<id> (hit)": (app, paths),
        "service GET /health/live": (app, ["/health/live"]),
        "floor GET /api/v1/products/<id>": (floor, paths),
        "floor GET /health/live": (floor, ["/health/live"]),
    }
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(rounds):  # interleaved: a busy moment falls on every case alike
        for name, (case_app, case_paths) in cases.items():
            best[name] = min(best[name], cpu_per_request(case_app, case_paths, requests))
    return best


def conditional(app: WsgiApp, paths: list[str], rounds: int, requests: int) -> dict[str, list[float]]:
    """Per read kind: CPU of a 200, of a 304, and the bytes of each on the wire."""
    kinds = {
        "product by id": paths,
        "list page of 20": [f"/api/v1/products?page={n}&page_size=20" for n in (1, 2)],
        "count": ["/api/v1/products/count", "/api/v1/products/count?category=testing"],
        "categories": ["/api/v1/categories"],
    }
    rows: dict[str, list[float]] = {}
    tags: dict[str, dict[str, dict[str, str]]] = {}
    for kind, kind_paths in kinds.items():
        for path in kind_paths:  # cached before measuring: every measured read is a hit
            call(app, path)
        tags[kind] = {p: {"If-None-Match": call(app, p)[2]} for p in kind_paths}
        sizes = []
        for headers in (None, tags[kind]):
            answers = [call(app, p, headers[p] if headers else None) for p in kind_paths]
            assert all(a[0].startswith("304" if headers else "200") for a in answers), answers
            sizes.append(sum(a[1] for a in answers) / len(answers))
        rows[kind] = [float("inf"), float("inf"), *sizes]
    for _ in range(rounds):
        for kind, row in rows.items():
            row[0] = min(row[0], cpu_per_request(app, kinds[kind], requests))
            row[1] = min(row[1], cpu_per_request(app, kinds[kind], requests, tags[kind]))
    return rows


def main(argv: list[str] | None = None) -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--log-level", default="INFO", help="the service's (INFO: one access line per request)")
    parser.add_argument("--conditional", action="store_true", help="a 304 against a 200 for every cached read kind")
    o = parser.parse_args(argv)
    with quiet_service(o.log_level) as (app, paths, redis_url):
        if o.conditional:
            rows = conditional(app, paths, o.rounds, o.requests)
        else:
            best = hits(app, paths, redis_url, o.rounds, o.requests)
    print(f"CPU per request in process, minimum of {o.rounds} rounds of {o.requests} (log level {o.log_level})")
    if o.conditional:
        print(f"  {'read':18s} {'CPU 200':>9s} {'CPU 304':>9s} {'bytes 200':>10s} {'bytes 304':>10s}")
        for kind, (cpu_200, cpu_304, bytes_200, bytes_304) in rows.items():
            print(f"  {kind:18s} {cpu_200 * 1e6:6.0f} us {cpu_304 * 1e6:6.0f} us {bytes_200:10.0f} {bytes_304:10.0f}")
    else:
        for name, seconds in best.items():
            print(f"  {name:45s} {seconds * 1e6:7.0f} us")


if __name__ == "__main__":
    main()
