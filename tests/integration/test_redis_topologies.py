"""The product API and the jobs on a real Sentinel setup and a real three-master Redis Cluster.

Each topology is started once for this module (tests/support/redis_topologies.py) and
every test isolates its data by key prefix. Celery's broker stays the separate
standalone redis-server of the session, as docs/redis-topologies.md recommends.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from flask import Flask
from flask.testing import FlaskClient
from redis.connection import AbstractConnection

from jollyjet import create_app
from jollyjet.cache.client import REDIS_ERRORS, build_redis_client
from jollyjet.cache.store import CacheBackend, CacheError
from jollyjet.extensions import services_of
from jollyjet.jobs.repair import run_repair
from jollyjet.settings import Settings
from tests.conftest import make_settings
from tests.support.factories import product_payload
from tests.support.jobs import AUTH, run_job
from tests.support.redis_server import RedisServer
from tests.support.redis_topologies import MASTER_NAME, ClusterTopology, SentinelTopology, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]
# Master and replica require one password, the sentinels another: both settings are exercised.
DATA_PASSWORD = "topo-data-password"
SENTINEL_PASSWORD = "topo-sentinel-password"


@pytest.fixture(scope="module")
def sentinel_topology() -> Iterator[SentinelTopology]:
    topology = SentinelTopology(password=DATA_PASSWORD, sentinel_password=SENTINEL_PASSWORD)
    try:
        topology.start()
        yield topology
    finally:
        topology.close()


@pytest.fixture(scope="module")
def cluster_topology() -> Iterator[ClusterTopology]:
    topology = ClusterTopology()
    try:
        topology.start()
        yield topology
    finally:
        topology.close()


def sentinel_settings(topology: SentinelTopology, **overrides: Any) -> dict[str, Any]:
    """Settings values selecting the sentinel topology (for make_settings)."""
    return {"redis_url": topology.url(DATA_PASSWORD, SENTINEL_PASSWORD), **overrides}


def cluster_settings(topology: ClusterTopology, **overrides: Any) -> dict[str, Any]:
    """Settings values selecting the cluster topology (for make_settings)."""
    return {"redis_url": topology.url, **overrides}


@pytest.fixture(params=["sentinel", "cluster"])
def topology_settings(request: pytest.FixtureRequest, redis_server: RedisServer) -> Settings:
    """Testing settings on one topology, with Celery on the separate standalone Redis."""
    celery = {
        "celery_broker_url": redis_server.url,
        "celery_result_backend": redis_server.url,
        "celery_queue": f"topo-{uuid.uuid4().hex[:12]}",
        "jobs_off_raw": "warm",
        "audit_mode": "full",
    }
    if request.param == "sentinel":
        values = sentinel_settings(request.getfixturevalue("sentinel_topology"), **celery)
    else:
        values = cluster_settings(request.getfixturevalue("cluster_topology"), **celery)
    return make_settings(**values)


def create(client: FlaskClient, **fields: Any) -> dict[str, Any]:
    response = client.post("/api/v1/products", json=product_payload(**fields), headers=AUTH)
    assert response.status_code == 201, response.json
    return response.json  # type: ignore[no-any-return]


def test_on_connect_runs_after_the_handshake_of_every_new_connection(
    redis_server: RedisServer, sentinel_topology: SentinelTopology, cluster_topology: ClusterTopology
) -> None:
    seen: list[tuple[str, int, str]] = []

    def on_connect(connection: AbstractConnection) -> None:
        # The handshake is done: the connection already answers commands.
        connection.send_command("INFO", "server")
        info = connection.read_response()
        run_id = next(line for line in info.decode().splitlines() if line.startswith("run_id:"))
        seen.append((connection.host, connection.port, run_id))  # type: ignore[attr-defined]

    standalone = build_redis_client(make_settings(redis_url=redis_server.url), on_connect=on_connect)
    standalone.ping()
    assert [(h, p) for h, p, _ in seen] == [("127.0.0.1", redis_server.port)]

    seen.clear()
    sentinel = build_redis_client(make_settings(**sentinel_settings(sentinel_topology)), on_connect=on_connect)
    sentinel.set("probe", b"1")
    assert [(h, p) for h, p, _ in seen] == [sentinel_topology.master_address()]

    seen.clear()
    cluster = build_redis_client(make_settings(**cluster_settings(cluster_topology)), on_connect=on_connect)
    for tag in range(30):  # 30 hash tags land on all three masters
        cluster.set(f"probe:{{{tag}}}", b"1")
    assert {p for _, p, _ in seen} == {n.port for n in cluster_topology.nodes}
    assert len({r for _, _, r in seen}) == 3  # three servers, three run ids


def test_the_product_api_on_the_topology(topology_settings: Settings) -> None:
    celery = create_app(topology_settings).extensions["celery"]
    app: Flask = celery.flask_app
    client = app.test_client()
    ids = [create(client, category="topo", stock=i)["id"] for i in range(12)]

    first = client.get(f"/api/v1/products/{ids[0]}")
    assert first.status_code == 200 and first.headers["X-Cache"] == "HIT"  # written through on create
    patched = client.patch(f"/api/v1/products/{ids[0]}", json={"stock": 99}, headers=AUTH)
    assert patched.status_code == 200 and patched.json["version"] == 2
    again = client.get(f"/api/v1/products/{ids[0]}")
    assert again.json["stock"] == 99 and again.headers["X-Cache"] == "HIT"

    listing_url = "/api/v1/products?category=topo&sort=stock&page_size=50"
    assert client.get(listing_url).headers["X-Cache"] == "MISS"
    cached = client.get(listing_url)
    assert cached.headers["X-Cache"] == "HIT" and len(cached.json) == 12
    assert client.get("/api/v1/products/count?category=topo").json == {"count": 12}
    assert client.get("/api/v1/products/count?category=topo").headers["X-Cache"] == "HIT"
    assert client.get("/api/v1/categories").json == [{"category": "topo", "count": 12}]

    assert client.delete(f"/api/v1/products/{ids[1]}", headers=AUTH).status_code == 204
    assert client.get(f"/api/v1/products/{ids[1]}").status_code == 404
    after = client.get(listing_url)
    assert after.headers["X-Cache"] == "MISS" and len(after.json) == 11  # the generation moved
    assert client.get("/api/v1/products/count?category=topo").json == {"count": 11}
    assert client.get("/api/v1/categories").json == [{"category": "topo", "count": 11}]

    cache = services_of(app).require_cache()
    backend, keys = cache.backend, cache.keys
    assert isinstance(backend, CacheBackend)
    # Batched reads span every node of a cluster: one pipeline, split per node by redis-py.
    entries = backend.get_versioned_many([keys.product(i).entry for i in ids])
    assert [e is not None and not e.is_tombstone for e in entries] == [True, False, *[True] * 10]

    with start_worker(celery, pool="solo", perform_ping_check=False):
        audit = run_job(client, "audit", timeout_s=30)["result"]
        cleanup = run_job(client, "cleanup", timeout_s=30)["result"]
    # SCAN found every product entry (11 live + 1 tombstone), on whichever node it is.
    assert audit["keys_checked"] == 12 and audit["tombstones"] == 1
    assert sum(audit["drift"].values()) == 0
    assert cleanup["by_kind"]["product"] == 12 and cleanup["keys_scanned"] >= 12 + 1

    dropped = client.delete("/api/v1/cache", headers=AUTH)
    assert dropped.status_code == 200 and dropped.json["deleted"] >= 12
    assert all(e is None for e in backend.get_versioned_many([keys.product(i).entry for i in ids]))
    assert client.get(f"/api/v1/products/{ids[0]}").json["stock"] == 99


def test_celery_on_a_sentinel_broker_with_kombu_urls(sentinel_topology: SentinelTopology) -> None:
    """The documented broker set-up: sentinel:// URLs, CELERY_SENTINEL_MASTER, CELERY_SENTINEL_PASSWORD."""
    urls = ";".join(f"sentinel://:{DATA_PASSWORD}@127.0.0.1:{s.port}" for s in sentinel_topology.sentinels)
    settings = make_settings(
        **sentinel_settings(sentinel_topology),
        celery_broker_url=urls,
        celery_result_backend=urls,
        celery_sentinel_master=MASTER_NAME,
        celery_sentinel_password=SENTINEL_PASSWORD,
        celery_queue=f"topo-{uuid.uuid4().hex[:12]}",
        jobs_off_raw="warm",
    )
    celery = create_app(settings).extensions["celery"]
    client = celery.flask_app.test_client()
    create(client, category="broker")
    with start_worker(celery, pool="solo", perform_ping_check=False):
        result = run_job(client, "cleanup", timeout_s=30)["result"]
    assert result["by_kind"]["product"] == 1
    # The task went through the master the sentinels name (kombu keeps its queue there).
    master = sentinel_topology.node_at(sentinel_topology.master_address())
    assert master.client().exists("_kombu.binding." + settings.celery_queue)


def test_sentinel_over_tls() -> None:
    """A rediss+sentinel:// REDIS_URL with ?ssl_ca_certs=: sentinels and servers that only speak TLS."""
    topology = SentinelTopology(password=DATA_PASSWORD, tls=True)
    try:
        topology.start()
        assert topology.tls is not None
        url = topology.url(DATA_PASSWORD)
        assert url.startswith("rediss+sentinel://") and "ssl_ca_certs=" in url
        settings = make_settings(redis_url=url)
        connections: list[str] = []
        client = build_redis_client(settings, on_connect=lambda c: connections.append(type(c).__name__))
        client.set("probe", b"1")
        assert client.get("probe") == b"1" and connections == ["SentinelManagedSSLConnection"]

        app = create_app(make_settings(redis_url=url))
        api = app.test_client()
        product = create(api, category="tls")
        assert api.get(f"/api/v1/products/{product['id']}").headers["X-Cache"] == "HIT"

        # Without TLS nothing answers: the servers have no plain port.
        plain_url = url.replace("rediss+", "redis+", 1).partition("?")[0]
        plain = build_redis_client(make_settings(redis_url=plain_url))
        with pytest.raises(REDIS_ERRORS):
            plain.ping()
    finally:
        topology.close()


def test_a_cluster_down_at_start_up_does_not_stop_the_service() -> None:
    """RedisCluster connects in its constructor; the service starts anyway, reads MongoDB, then uses the cluster."""
    topology = ClusterTopology()  # ports chosen, nothing started yet
    try:
        app = create_app(make_settings(**cluster_settings(topology), breaker_cooldown_s=0.2))
        client = app.test_client()
        product = create(client, category="late-cluster")
        bypass = client.get(f"/api/v1/products/{product['id']}")
        assert bypass.status_code == 200 and bypass.headers["X-Cache"] == "BYPASS"
        assert client.get("/api/v1/products?category=late-cluster").status_code == 200

        topology.start()
        services = services_of(app)
        cache = services.require_cache()
        wait_for(lambda: _answers(cache.backend), 30, "the service's cache client to reach the cluster")
        later = create(client, category="late-cluster")
        assert client.get(f"/api/v1/products/{later['id']}").headers["X-Cache"] == "HIT"
        # The write made while the cluster was down is fenced until the repair job replays it.
        assert client.get(f"/api/v1/products/{product['id']}").headers["X-Cache"] != "HIT"
        assert run_repair(services, services.settings).as_dict()["remaining"] == 0
        # The fence lifts at its next poll of the pending records.
        wait_for(lambda: _hit(client, product["id"]), 10, "the replayed product to be served from the cache")
    finally:
        topology.close()


def _hit(client: FlaskClient, product_id: str) -> bool:
    return client.get(f"/api/v1/products/{product_id}").headers["X-Cache"] == "HIT"


def _answers(backend: CacheBackend) -> bool:
    try:
        return backend.ping()
    except CacheError:
        return False
