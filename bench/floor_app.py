"""Mode 5: the floor. A bare Flask view returning one Redis GET of pre-rendered bytes.

Nothing is decoded, checked or rendered: this is the least any Redis-backed read can
cost on this stack (Flask, gunicorn, redis-py), so it bounds what the service's hit
path can reach. The runner stores each product's API body under FLOOR_PREFIX + id.
"""

from __future__ import annotations

import os
import re

import redis
from flask import Flask, Response, jsonify

FLOOR_PREFIX = "bench:floor:"
# Keys are never built from raw input: the id must look like an ObjectId first.
_OBJECT_ID = re.compile(r"[0-9a-f]{24}")


def create_floor_app() -> Flask:
    """The floor app on REDIS_URL."""
    app = Flask("floor")
    client = redis.Redis.from_url(os.environ["REDIS_URL"])

    @app.get("/health/live")
    def live() -> Response:
        return jsonify(status="ok")

    @app.get("/api/v1/products/<product_id>")
    def get_product(product_id: str) -> Response:
        body = client.get(FLOOR_PREFIX + product_id) if _OBJECT_ID.fullmatch(product_id) else None
        if body is None:
            return Response(b'{"message": "not found"}', status=404, mimetype="application/json")
        return Response(body, mimetype="application/json")

    return app
