"""The two apps the service is compared with, each under gunicorn as the Procfile runs the service.

naive: the cache a user would write, not a pattern to copy: the same documents and routes,
Flask-Caching's `@cache.cached(timeout=60)` on the reads (lists and counts keyed on the
query string) and no invalidation, so reads serve old bytes for up to a minute (the stale
checker shows it). It counts its MongoDB commands as jollyjet_db_queries_total, like the service.

floor: a bare Flask view returning one Redis GET of pre-rendered bytes: the least a
Redis-backed read costs on this stack (Flask, gunicorn, redis-py).
"""

from __future__ import annotations

import hmac
import os
import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import redis
from bson import ObjectId
from flask import Flask, Response, abort, jsonify, request
from flask_caching import Cache
from pymongo import MongoClient, ReturnDocument, monitoring

from bench.workload import to_api

FLOOR_PREFIX = "bench:floor:"
_OBJECT_ID = re.compile(r"[0-9a-f]{24}")  # keys are never built from raw input
_SORTS = {"price": "price_cents", "name": "name", "created_at": "created_at", "updated_at": "updated_at"}


def floor_app() -> Flask:
    """The floor on REDIS_URL (the runner stores each product's API body under FLOOR_PREFIX + id)."""
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


def _oid(product_id: str) -> ObjectId:
    if not ObjectId.is_valid(product_id):
        abort(404)
    return ObjectId(product_id)


def _cents(value: str) -> int:
    try:
        return int(Decimal(value) * 100)
    except InvalidOperation:
        abort(400)


def _filter(args: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"category": args["category"]} if "category" in args else {}
    if "tag" in args:
        spec["tags"] = {"$in": [args["tag"]]}
    bounds = (("$gte", "min_price"), ("$lte", "max_price"))
    if price := {op: _cents(args[name]) for op, name in bounds if name in args}:
        spec["price_cents"] = price
    if "in_stock" in args:
        spec["stock"] = {"$gt": 0} if args["in_stock"] == "true" else {"$lte": 0}
    return spec


class _QueryCounter(monitoring.CommandListener):
    def __init__(self) -> None:
        from prometheus_client import Counter  # after gunicorn.conf.py chose the multiprocess directory

        self.queries = Counter("jollyjet_db_queries", "MongoDB commands sent", ["operation"])

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.queries.labels(event.command_name).inc()

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def naive_app() -> Flask:
    """The naive app on MONGODB_URI and REDIS_URL; writes need a token from JOLLYJET_API_TOKENS."""
    app = Flask("naive")
    config = {"CACHE_TYPE": "RedisCache", "CACHE_REDIS_URL": os.environ["REDIS_URL"], "CACHE_KEY_PREFIX": "naive:"}
    cache = Cache(app, config=config)
    client: MongoClient[dict[str, Any]] = MongoClient(
        os.environ["MONGODB_URI"], tz_aware=True, event_listeners=[_QueryCounter()]
    )
    products = client.get_default_database()["products"]
    tokens = [t.strip().encode() for t in os.environ.get("JOLLYJET_API_TOKENS", "").split(",") if t.strip()]

    def require_token() -> None:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").encode()
        if not any(hmac.compare_digest(given, t) for t in tokens):
            abort(401)

    @app.get("/health/live")
    def live() -> Any:
        return jsonify(status="ok")

    @app.get("/api/v1/products/<product_id>")
    @cache.cached(timeout=60)
    def get_product(product_id: str) -> Any:
        doc = products.find_one({"_id": _oid(product_id)})
        if doc is None:
            abort(404)
        return jsonify(to_api(doc))

    @app.get("/api/v1/products")
    @cache.cached(timeout=60, query_string=True)
    def list_products() -> Any:
        spec = _filter(request.args)
        sort = request.args.get("sort", "-created_at")
        field, direction = _SORTS[sort.lstrip("-")], -1 if sort.startswith("-") else 1
        page, size = int(request.args.get("page", 1)), int(request.args.get("page_size", 20))
        total = products.count_documents(spec)
        docs = products.find(spec).sort([(field, direction), ("_id", direction)]).skip((page - 1) * size).limit(size)
        response = jsonify([to_api(d) for d in docs])
        response.headers["X-Pagination"] = f'{{"total": {total}}}'
        return response

    @app.get("/api/v1/products/count")
    @cache.cached(timeout=60, query_string=True)
    def count_products() -> Any:
        return jsonify(count=products.count_documents(_filter(request.args)))

    @app.post("/api/v1/products")
    def create_product() -> Any:
        require_token()
        doc = {"description": "", "currency": "USD", "tags": [], "stock": 0, "is_active": True} | request.get_json()
        now = datetime.now(UTC)
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # what MongoDB keeps
        doc |= {"price_cents": _cents(str(doc.pop("price"))), "version": 1, "created_at": now, "updated_at": now}
        products.insert_one(doc)
        return jsonify(to_api(doc)), 201

    @app.patch("/api/v1/products/<product_id>")
    def update_product(product_id: str) -> Any:
        require_token()
        changes = dict(request.get_json())
        if "price" in changes:
            changes["price_cents"] = _cents(str(changes.pop("price")))
        doc = products.find_one_and_update(
            {"_id": _oid(product_id)},
            {"$set": changes, "$inc": {"version": 1}, "$currentDate": {"updated_at": True}},
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            abort(404)
        return jsonify(to_api(doc))

    @app.delete("/api/v1/products/<product_id>")
    def delete_product(product_id: str) -> Any:
        require_token()
        if products.find_one_and_delete({"_id": _oid(product_id)}) is None:
            abort(404)
        return Response(status=204)

    return app
