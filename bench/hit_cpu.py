"""CPU per request, in process: the service's cached GET and trivial endpoint against the floor app's.

    .venv/bin/python -m bench.hit_cpu [--rounds 10] [--requests 1500]

No HTTP server and no load generator: each app is called as a WSGI callable, one request
after another, and the CPU time of this process (time.process_time) is divided by the
requests served; the minimum over interleaved rounds is reported, which other work on a
shared machine barely moves. A real redis-server on a free port holds the data; the
service runs with its production logging (JSON access line per request, written to
/dev/null here) and the in-process MongoDB stand-in (a hit never reaches it). What this
leaves out (gunicorn's HTTP parsing, sockets, its own access log) is the same for every
app, so the differences between these figures are what the benchmark's per-request CPU
differences are made of.
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

from tests.support.factories import product_payload
from tests.support.redis_server import RedisServer

TOKEN = "bench-hit-cpu-token"  # a throwaway token of this in-process run
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
    return None


def cpu_per_request(
    app: WsgiApp, paths: list[str], requests: int, headers: Mapping[str, Mapping[str, str]] | None = None
) -> float:
    """CPU seconds per request for `requests` calls cycling through paths (headers: a path's request headers)."""
    environs = [EnvironBuilder(path=p, headers=list((headers or {}).get(p, {}).items())).get_environ() for p in paths]
    started = time.process_time()
    for i in range(requests):
        body = app(dict(environs[i % len(environs)]), _start_response)
        b"".join(body)
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return (time.process_time() - started) / requests


def service_app(redis_url: str, log_level: str) -> tuple[WsgiApp, list[str]]:
    """The service (production logging) with 50 cached products; returns the app and their paths."""
    from jollyjet.app_factory import build_services, create_app
    from jollyjet.settings import load_settings

    settings = load_settings(
        env="testing",
        mongodb_uri="mongomock://localhost/bench_hit_cpu",
        redis_url=redis_url,
        api_tokens_raw=TOKEN,
        log_level=log_level,
        log_format="json",
    )
    app = create_app(settings, build_services(settings))
    client = app.test_client()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    created = [client.post("/api/v1/products", json=product_payload(), headers=auth).get_json() for _ in range(50)]
    ids = [product["id"] for product in created]
    paths = [f"/api/v1/products/{i}" for i in ids]
    for path in paths:
        client.get(path)  # every entry cached: the measured reads are hits
    return app, paths


@contextmanager
def quiet_service(log_level: str) -> Iterator[tuple[WsgiApp, list[str], str]]:
    """service_app on a redis-server of its own, its log lines sent nowhere; yields (app, product paths, Redis URL)."""
    server = RedisServer()
    server.start()
    real_stderr = sys.stderr
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - the service's log handler keeps writing to it
    try:
        service, product_paths = service_app(server.url, log_level)
        yield service, product_paths, server.url
    finally:
        sys.stderr.close()
        sys.stderr = real_stderr
        server.close()


def floor_app(redis_url: str, bodies: dict[str, bytes]) -> tuple[WsgiApp, list[str]]:
    """bench/floor_app.py with the same product bodies stored as it expects them."""
    import redis

    from bench.floor_app import FLOOR_PREFIX, create_floor_app

    client = redis.Redis.from_url(redis_url)
    for product_id, body in bodies.items():
        client.set(FLOOR_PREFIX + product_id, body)
    previous = os.environ.get("REDIS_URL")
    os.environ["REDIS_URL"] = redis_url  # read once, by create_floor_app
    try:
        app = create_floor_app()
    finally:
        if previous is None:
            del os.environ["REDIS_URL"]
        else:
            os.environ["REDIS_URL"] = previous
    return app, [f"/api/v1/products/{i}" for i in bodies]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument(
        "--log-level", default="INFO", help="the service's JOLLYJET_LOG_LEVEL (INFO: one access line per request)"
    )
    options = parser.parse_args(argv)
    with quiet_service(options.log_level) as (service, product_paths, redis_url):
        bodies = {
            p.rsplit("/", 1)[1]: b"".join(service(EnvironBuilder(path=p).get_environ(), _start_response))
            for p in product_paths
        }
        floor, floor_paths = floor_app(redis_url, bodies)
        cases: dict[str, tuple[WsgiApp, list[str]]] = {
            "service GET /api/v1/products/<id> (hit)": (service, product_paths),
            "service GET /health/live": (service, ["/health/live"]),
            "floor GET /api/v1/products/<id>": (floor, floor_paths),
            "floor GET /health/live": (floor, ["/health/live"]),
        }
        best = {name: float("inf") for name in cases}
        for _ in range(options.rounds):  # interleaved: a busy moment falls on every case alike
            for name, (app, paths) in cases.items():
                best[name] = min(best[name], cpu_per_request(app, paths, options.requests))
    print(
        f"CPU per request in process, minimum of {options.rounds} rounds of {options.requests} requests "
        f"(service log level {options.log_level}):"
    )
    for name, seconds in best.items():
        print(f"  {name:45s} {seconds * 1e6:7.0f} us")


if __name__ == "__main__":
    main()
