"""A Redis that is not the one we wrote to is never served from: restarts, snapshot restores, flushes.

Real redis-server processes; the service on mongomock through the Flask test client.
The epoch guard (jollyjet/cache/epoch.py) checks each new connection's server
identity and deletes this service's keys on a server it has not verified before.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from jollyjet.cache.epoch import CacheEpochGuard, TrustedServers, UnverifiedCacheServer, server_identity
from jollyjet.cache.events import EventCounter
from jollyjet.services import services_of
from tests.conftest import TOKEN, make_app, make_settings
from tests.support.factories import product_payload
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LIST_URL = "/api/v1/products?category=epoch&sort=name"
COUNT_URL = "/api/v1/products/count?category=epoch"


@pytest.fixture
def snapshot_redis() -> Iterator[RedisServer]:
    server = RedisServer(persist=True)
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def app(snapshot_redis: RedisServer) -> Flask:
    # A short breaker cool-down: the restart fails a few calls, then the cache is used again.
    settings = make_settings(redis_url=snapshot_redis.url, breaker_cooldown_s=0.05)
    return make_app(settings, events=EventCounter())


def create(client: FlaskClient, **fields: Any) -> dict[str, Any]:
    response = client.post("/api/v1/products", json=product_payload(category="epoch", **fields), headers=AUTH)
    assert response.status_code == 201, response.json
    return response.json  # type: ignore[no-any-return]


def get(client: FlaskClient, url: str) -> Any:
    """GET until a read is served through the cache again (the restart fails a call or two first)."""
    for _ in range(50):
        response = client.get(url)
        assert response.status_code in (200, 404), response.json
        if response.status_code == 404 or response.headers["X-Cache"] != "BYPASS":
            return response
    raise AssertionError(f"{url} never left BYPASS")


def test_restart_from_an_old_snapshot_serves_no_old_product_list_or_count(
    app: Flask, snapshot_redis: RedisServer
) -> None:
    client = app.test_client()
    services = services_of(app).require_cache()
    products = [create(client, stock=1) for _ in range(3)]
    for product in products:
        assert client.get(f"/api/v1/products/{product['id']}").headers["X-Cache"] == "HIT"
    assert client.get(LIST_URL).status_code == 200 and client.get(LIST_URL).headers["X-Cache"] == "HIT"
    assert client.get(COUNT_URL).json == {"count": 3}
    raw = snapshot_redis.client()
    assert raw.save()  # the snapshot: every product at version 1, the list and count of three

    updated = [client.patch(f"/api/v1/products/{p['id']}", json={"stock": 9}, headers=AUTH).json for p in products]
    assert client.delete(f"/api/v1/products/{products[0]['id']}", headers=AUTH).status_code == 204
    assert client.get(COUNT_URL).json == {"count": 2}  # every write-through succeeded: nothing to repair

    snapshot_redis.kill()
    snapshot_redis.start()  # loads the snapshot: old versions, old list, old count, old generation
    entry = services.keys.product(updated[1]["id"]).entry
    assert raw.hget(entry, "v") == b"1"  # the setup works: the old data is back

    assert get(client, f"/api/v1/products/{products[0]['id']}").status_code == 404
    for product in updated[1:]:
        response = get(client, f"/api/v1/products/{product['id']}")
        assert response.json["version"] == 2 and response.json["stock"] == 9
    listing = get(client, LIST_URL)
    assert sorted((p["id"], p["version"]) for p in listing.json) == sorted((p["id"], 2) for p in updated[1:])
    assert get(client, COUNT_URL).json == {"count": 2}
    assert services.epoch_guard.epochs_started == 2  # the first connection ever, and the restarted server
    assert TrustedServers(services.keys.prefix).current_epoch() == 2


def test_a_flush_without_restart_loses_data_but_serves_nothing_old(app: Flask, snapshot_redis: RedisServer) -> None:
    client = app.test_client()
    product = create(client)
    assert client.get(LIST_URL).status_code == 200
    snapshot_redis.client().flushall()
    patched = client.patch(f"/api/v1/products/{product['id']}", json={"stock": 2}, headers=AUTH).json
    response = client.get(f"/api/v1/products/{product['id']}")
    assert response.headers["X-Cache"] == "HIT" and response.json == patched
    listing = client.get(LIST_URL)
    assert listing.headers["X-Cache"] == "MISS" and listing.json == [patched]
    assert services_of(app).require_cache().epoch_guard.epochs_started == 1  # same server: no new epoch


def test_restart_empty_is_a_new_epoch_and_lists_start_over(app: Flask, snapshot_redis: RedisServer) -> None:
    client = app.test_client()
    first = create(client)
    assert client.get(LIST_URL).status_code == 200
    snapshot_redis.kill()
    (snapshot_redis.dir / "dump.rdb").unlink(missing_ok=True)
    snapshot_redis.start()
    second = create(client)
    listing = get(client, LIST_URL)
    assert sorted(p["id"] for p in listing.json) == sorted([first["id"], second["id"]])
    assert services_of(app).require_cache().epoch_guard.epochs_started == 2


def test_a_second_process_trusts_what_the_first_verified_without_deleting(
    app: Flask, snapshot_redis: RedisServer
) -> None:
    client = app.test_client()
    product = create(client)
    prefix = services_of(app).require_cache().keys.prefix
    other = CacheEpochGuard(prefix, EventCounter())
    connection = redis.Connection(host="127.0.0.1", port=snapshot_redis.port, redis_connect_func=None)
    connection.connect()
    try:
        other(connection)
    finally:
        connection.disconnect()
    assert other.epochs_started == 0  # verified by the app already: one MongoDB read, nothing deleted
    response = client.get(f"/api/v1/products/{product['id']}")
    assert response.headers["X-Cache"] == "HIT"


class _UnreachableStore(TrustedServers):
    def is_trusted(self, identity: str) -> bool:
        from pymongo.errors import ServerSelectionTimeoutError

        raise ServerSelectionTimeoutError("no MongoDB")


def test_an_unknown_server_is_not_used_while_mongodb_cannot_say_whether_it_is_trusted(
    snapshot_redis: RedisServer,
) -> None:
    guard = CacheEpochGuard("unverified", EventCounter(), store=_UnreachableStore("unverified"))
    raw = snapshot_redis.client()
    raw.set("unverified:v1:product:{0123456789abcdef01234567}", b"old")
    client = redis.Redis(
        connection_pool=redis.ConnectionPool(port=snapshot_redis.port, redis_connect_func=_then(guard))
    )
    with pytest.raises(UnverifiedCacheServer):
        client.get("unverified:v1:product:{0123456789abcdef01234567}")
    assert raw.exists("unverified:v1:product:{0123456789abcdef01234567}")  # not deleted, not served
    connection = redis.Connection(port=snapshot_redis.port)
    connection.connect()
    run_id = raw.info("server")["run_id"]
    assert server_identity(connection).startswith(f"{run_id}/")
    connection.disconnect()


def _then(guard: CacheEpochGuard) -> Any:
    def connect(connection: redis.Connection) -> None:
        connection.on_connect()
        guard(connection)

    return connect
