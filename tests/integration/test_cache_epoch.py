"""A Redis that is not the one we wrote to is never served from: restarts, snapshot restores, flushes.

Real redis-server processes; the service on mongomock through the Flask test client.
The epoch guard (jollyjet/cache/epoch.py) checks each new connection's server
identity and deletes this service's keys on a server it has not verified before.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from jollyjet.cache.epoch import (
    CacheEpochGuard,
    CacheEpochRecord,
    CurrentServer,
    CurrentServers,
    UnverifiedCacheServer,
    probe_server,
)
from jollyjet.cache.store import CacheServerSettling
from jollyjet.extensions import services_of
from tests.conftest import TOKEN, make_app, make_settings
from tests.support.factories import product_payload
from tests.support.redis_server import RedisServer
from tests.support.redis_topologies import wait_for

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
    # A short breaker cool-down: the restart fails a few calls, then the cache is used again. A short
    # poll: a restarted server replaces the old one and waits two polls before it is used.
    settings = make_settings(redis_url=snapshot_redis.url, breaker_cooldown_s=0.05, cache_fence_poll_s=0.05)
    return make_app(settings)


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
        time.sleep(0.02)
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
    assert CacheEpochRecord.objects.get(id=services.keys.prefix).epoch == 2


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
    # The restarted server replaces the old one: it is used once every process could have left
    # the old one (a write meanwhile would be recorded for repair, which this test does not run).
    assert len(get(client, LIST_URL).json) == 1
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
    other = CacheEpochGuard(prefix, poll_s=1.0)
    connection = redis.Connection(host="127.0.0.1", port=snapshot_redis.port, redis_connect_func=None)
    connection.connect()
    try:
        other(connection)
    finally:
        connection.disconnect()
    assert other.epochs_started == 0  # verified by the app already: one MongoDB read, nothing deleted
    response = client.get(f"/api/v1/products/{product['id']}")
    assert response.headers["X-Cache"] == "HIT"


class _UnreachableStore(CurrentServers):
    def read(self) -> dict[str, CurrentServer]:
        from pymongo.errors import ServerSelectionTimeoutError

        raise ServerSelectionTimeoutError("no MongoDB")


def test_an_unknown_server_is_not_used_while_mongodb_cannot_say_whether_it_is_trusted(
    snapshot_redis: RedisServer,
) -> None:
    guard = CacheEpochGuard("unverified", 1.0, store=_UnreachableStore("unverified"))
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
    tag, role = probe_server(connection, cluster=False)
    assert tag.identity.startswith(f"{run_id}/") and role == "master"
    connection.disconnect()


def _then(guard: CacheEpochGuard) -> Any:
    def connect(connection: redis.Connection) -> None:
        connection.on_connect()
        guard(connection)

    return connect


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _wait_linked(server: RedisServer) -> None:
    wait_for(lambda: server.client().info("replication").get("master_link_status") == "up", 15, "the replica to sync")


def _connection(server: RedisServer, guard: CacheEpochGuard) -> redis.Connection:
    connection = redis.Connection(host="127.0.0.1", port=server.port, redis_connect_func=_then(guard))
    connection.connect()
    return connection


def test_a_failover_fences_the_old_master_and_the_new_one_waits_for_every_process_to_leave_it(
    app: Flask, snapshot_redis: RedisServer
) -> None:
    """Two processes' guards, a master and its replica; the replica is promoted.

    The process that finds the new master starts an epoch on it and uses it only after
    max_age_s; the process still on the old master stops using it once its view of the
    current server is renewed; a process that comes later uses the settled master at once."""
    prefix = "failover"
    replica = RedisServer()
    replica.start()
    try:
        replica.client().replicaof("127.0.0.1", snapshot_redis.port)
        old_clock, new_clock = _Clock(), _Clock()
        on_old = CacheEpochGuard(prefix, 1.0, clock=old_clock)
        on_new = CacheEpochGuard(prefix, 1.0, clock=new_clock)
        to_old = _connection(snapshot_redis, on_old)
        on_old.check(to_old)  # the first server ever: current and settled at once
        assert on_old.epochs_started == 1

        with pytest.raises(UnverifiedCacheServer, match="slave"):
            _connection(replica, on_new)  # a replica is never used
        _wait_linked(replica)
        replica.client().replicaof("no", "one")  # the failover
        snapshot_redis.client().replicaof("127.0.0.1", replica.port)
        # A master whose first replica attaches with no backlog of its own takes a new
        # replication id: wait for the link so that the identity the guards see is the final one.
        _wait_linked(snapshot_redis)
        to_new = _connection(replica, on_new)
        assert on_new.epochs_started == 1
        with pytest.raises(CacheServerSettling):
            on_new.check(to_new)  # the old master may still be in use elsewhere

        on_old.check(to_old)  # its view is still fresh: the bounded window
        old_clock.now += 1.6  # the next poll
        with pytest.raises(UnverifiedCacheServer, match="slave"):
            on_old.check(to_old)  # not current any more: reconnected, and the old master is now a replica

        new_clock.now += on_new.max_age_s
        on_new.check(to_new)  # every process has had its view renewed: settled
        later = CacheEpochGuard(prefix, 1.0)
        later.check(_connection(replica, later))
        assert later.epochs_started == 0
        assert CurrentServers(prefix).read()["all"].settled
    finally:
        replica.close()


def test_no_recent_view_of_the_current_server_no_use(app: Flask, snapshot_redis: RedisServer) -> None:
    clock = _Clock()
    store = CurrentServers("blind")
    guard = CacheEpochGuard("blind", 1.0, store=store, clock=clock)
    connection = _connection(snapshot_redis, guard)
    guard.check(connection)
    guard.store = _UnreachableStore("blind")  # MongoDB goes away
    clock.now += guard.max_age_s - 0.1
    guard.check(connection)  # the last view is recent enough
    clock.now += 0.2
    with pytest.raises(CacheServerSettling, match="no recent view"):
        guard.check(connection)
