"""A 304 against a 200 for the same cached reads: CPU per request and bytes per response, side by side.

    .venv/bin/python -m bench.conditional_get [--rounds 10] [--requests 1500]

In process, like bench/hit_cpu.py (whose service app and loop it reuses): the service on
a real redis-server with 50 cached products, each read called as a WSGI request, once
plain (200) and once with If-None-Match naming its current ETag (304); the minimum CPU
per request over interleaved rounds. Bytes are what the response puts on the wire: status
line, headers and body, as HTTP/1.1 frames them (gunicorn adds the same Date and Server
to both). Both answers come from the same cache read; the 304 saves rendering nothing
but sending the body, so its gain grows with the body (a list page more than one product).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from werkzeug.test import EnvironBuilder

from bench.hit_cpu import WsgiApp, cpu_per_request, quiet_service


def response_bytes(app: WsgiApp, path: str, headers: dict[str, str] | None = None) -> tuple[str, int, str]:
    """One call: (status, bytes on the wire, ETag)."""
    seen: dict[str, Any] = {}

    def start(status: str, response_headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        seen["status"], seen["headers"] = status, response_headers

    body = b"".join(app(EnvironBuilder(path=path, headers=list((headers or {}).items())).get_environ(), start))
    head = f"HTTP/1.1 {seen['status']}\r\n" + "".join(f"{n}: {v}\r\n" for n, v in seen["headers"]) + "\r\n"
    return seen["status"], len(head.encode()) + len(body), dict(seen["headers"])["ETag"]


@dataclass
class Row:
    """One kind of read: its paths, each path's current ETag, and the figures."""

    paths: list[str]
    tags: dict[str, dict[str, str]]
    bytes_200: float
    bytes_304: float
    cpu_200: float = float("inf")
    cpu_304: float = float("inf")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--log-level", default="INFO", help="the service's JOLLYJET_LOG_LEVEL")
    options = parser.parse_args(argv)
    with quiet_service(options.log_level) as (service, product_paths, _):
        kinds = {
            "product by id": product_paths,
            "list page of 20": [f"/api/v1/products?page={n}&page_size=20" for n in (1, 2)],
            "count": ["/api/v1/products/count", "/api/v1/products/count?category=testing"],
            "categories": ["/api/v1/categories"],
        }
        rows: dict[str, Row] = {}
        for kind, paths in kinds.items():
            for path in paths:  # cached before measuring: every measured read is a hit
                response_bytes(service, path)
            plain = [response_bytes(service, p) for p in paths]
            tags = {p: {"If-None-Match": tag} for p, (_, _, tag) in zip(paths, plain, strict=True)}
            conditional = [response_bytes(service, p, tags[p]) for p in paths]
            assert all(s.startswith("200") for s, _, _ in plain) and all(s.startswith("304") for s, _, _ in conditional)
            bytes_200 = sum(b for _, b, _ in plain) / len(paths)
            rows[kind] = Row(paths, tags, bytes_200, sum(b for _, b, _ in conditional) / len(paths))
        for _ in range(options.rounds):  # interleaved: a busy moment falls on every case alike
            for row in rows.values():
                row.cpu_200 = min(row.cpu_200, cpu_per_request(service, row.paths, options.requests))
                row.cpu_304 = min(row.cpu_304, cpu_per_request(service, row.paths, options.requests, row.tags))
    print(
        f"Cached reads, 200 against 304 (If-None-Match: the current ETag), in process; CPU: minimum of "
        f"{options.rounds} rounds of {options.requests} requests (service log level {options.log_level})"
    )
    print(f"  {'read':18s} {'CPU 200':>9s} {'CPU 304':>9s} {'bytes 200':>10s} {'bytes 304':>10s}")
    for kind, row in rows.items():
        print(
            f"  {kind:18s} {row.cpu_200 * 1e6:6.0f} us {row.cpu_304 * 1e6:6.0f} us "
            f"{row.bytes_200:10.0f} {row.bytes_304:10.0f}"
        )


if __name__ == "__main__":
    main()
