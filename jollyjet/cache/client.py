"""Builds the redis-py client from settings, with every safety knob set explicitly.

redis-py's defaults are unsafe for a cache in the request path: before 8.1 socket
timeouts are None (a dead Redis hangs a request forever) and 8.1's defaults
(5 s timeouts, retries) can block one call for up to a minute. Here every timeout,
the retry budget and a bounded, blocking pool come from settings, in each topology:

- standalone: one server from REDIS_URL;
- sentinel: redis-py's own `Sentinel(...).master_for(...)`: the pool asks the
  sentinels for the master's address on each new connection, and drops its idle
  connections when the answer changes (a failover);
- cluster: redis-py's own `RedisCluster`, started from the node in REDIS_URL; one
  bounded pool per node; built on first use (DeferredCluster), so a cluster that is
  down while a process starts does not stop it.

`on_connect` is called with each new connection right after its handshake (AUTH,
HELLO, SELECT), before the connection carries its first command, in every topology
and on every node. It runs inside redis-py's `redis_connect_func`, so an exception it
raises fails that connection attempt (redis-py disconnects it) and the command that
needed it. `check` is called each time a pool hands a connection out (every command,
pipeline and script call); an exception it raises fails that call and the connection
goes back to the pool. Together they are the cache epoch's fence (epoch.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.cluster import RedisCluster
from redis.connection import AbstractConnection
from redis.exceptions import RedisClusterException
from redis.retry import Retry
from redis.sentinel import Sentinel

from jollyjet.cache.deferred_cluster import DeferredCluster
from jollyjet.settings import (
    REDIS_HEALTH_CHECK_INTERVAL_S,
    REDIS_POOL_TIMEOUT_MS,
    REDIS_RETRIES,
    RedisTopology,
    Settings,
)

log = logging.getLogger(__name__)

OnConnect = Callable[[AbstractConnection], None]
# Called with each connection a pool hands out; raises to refuse it.
ConnectionCheck = Callable[[AbstractConnection], None]
# What the service calls a Redis client: every topology's client has the same command API.
RedisClient = redis.Redis | RedisCluster | DeferredCluster
# Every error a call on a RedisClient raises for a Redis-side failure. The cluster client
# raises some (an uncovered slot, say) outside RedisError.
REDIS_ERRORS: tuple[type[Exception], ...] = (redis.RedisError, RedisClusterException)


def build_redis_client(
    settings: Settings, *, on_connect: OnConnect | None = None, check: ConnectionCheck | None = None
) -> RedisClient:
    """A client on bounded blocking pools for the configured topology; fakeredis when no Redis is configured."""
    if settings.embedded_redis:
        return _embedded_client()
    if settings.redis_topology is RedisTopology.SENTINEL:
        return _sentinel_client(settings, on_connect, check)
    if settings.redis_topology is RedisTopology.CLUSTER:
        return _cluster_client(settings, on_connect, check)
    return _standalone_client(settings, on_connect, check)


def _checked_pool(pool_class: type[Any], check: ConnectionCheck | None) -> type[Any]:
    """pool_class whose get_connection hands out only connections that pass check."""
    if check is None:
        return pool_class

    def get_connection(self: Any, *args: Any, **kwargs: Any) -> Any:
        connection = pool_class.get_connection(self, *args, **kwargs)
        try:
            check(connection)
        except BaseException:
            self.release(connection)
            raise
        return connection

    return type(f"Checked{pool_class.__name__}", (pool_class,), {"get_connection": get_connection})


def _retry(settings: Settings) -> Retry:
    return Retry(ExponentialBackoff(cap=0.05, base=0.005), REDIS_RETRIES)


def _connection_options(settings: Settings, on_connect: OnConnect | None, cluster: bool = False) -> dict[str, Any]:
    """Per-connection knobs shared by every topology."""
    options: dict[str, Any] = {
        "socket_timeout": settings.redis_socket_timeout_ms / 1000,
        "socket_connect_timeout": settings.redis_connect_timeout_ms / 1000,
        "socket_keepalive": True,
        "health_check_interval": REDIS_HEALTH_CHECK_INTERVAL_S,
    }
    if on_connect is not None:
        # RedisCluster runs the handshake itself and then calls redis_connect_func; the
        # other clients replace their handshake with it, so it must run the handshake first.
        options["redis_connect_func"] = on_connect if cluster else _handshake_then(on_connect)
    return options


def _handshake_then(on_connect: OnConnect) -> OnConnect:
    def connect(connection: AbstractConnection) -> None:
        # Without the health check, as redis-py's own handshake on a fresh socket: with it
        # (connection.on_connect()), an overdue health-check PING that fails reconnects,
        # which runs this function again, recursing until the interpreter gives up.
        connection.on_connect_check_health(check_health=False)
        on_connect(connection)

    return connect


def _standalone_client(settings: Settings, on_connect: OnConnect | None, check: ConnectionCheck | None) -> redis.Redis:
    assert settings.redis_url is not None
    pool = _checked_pool(redis.BlockingConnectionPool, check).from_url(
        settings.redis_url,
        max_connections=settings.redis_pool_size,
        # How long a request waits for a free connection before failing fast.
        timeout=REDIS_POOL_TIMEOUT_MS / 1000,
        retry=_retry(settings),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        **_connection_options(settings, on_connect),
    )
    return redis.Redis(connection_pool=pool)


def _sentinel_client(settings: Settings, on_connect: OnConnect | None, check: ConnectionCheck | None) -> redis.Redis:
    tls: dict[str, Any] = {}
    if settings.redis_tls:
        tls = {"ssl": True, "ssl_ca_certs": settings.redis_tls_ca_file}
    sentinel_password = settings.redis_sentinel_password
    sentinels = list(settings.redis_sentinels)
    sentinel = Sentinel(
        sentinels,
        # With several sentinels, take a master's address only from one that sees another
        # sentinel: a sentinel cut off from the others may still name the old master.
        min_other_sentinels=1 if len(sentinels) > 1 else 0,
        # The sentinels' own connections: same timeouts and retry budget, their own password (if any).
        # Without an explicit retry redis-py 8 retries 3 times with 1-10 s backoff per sentinel: a
        # new master connection would block for ~20 s while the sentinels do not answer.
        sentinel_kwargs={
            "socket_timeout": settings.redis_socket_timeout_ms / 1000,
            "socket_connect_timeout": settings.redis_connect_timeout_ms / 1000,
            "retry": _retry(settings),
            "password": sentinel_password.get_secret_value() if sentinel_password else None,
            "username": None,
            **tls,
        },
    )
    password = settings.redis_password
    client: redis.Redis = sentinel.master_for(
        settings.redis_sentinel_master,
        connection_pool_class=_checked_pool(_BlockingSentinelPool, check),
        max_connections=settings.redis_pool_size,
        timeout=REDIS_POOL_TIMEOUT_MS / 1000,
        username=settings.redis_username,
        password=password.get_secret_value() if password else None,
        retry=_retry(settings),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        **tls,
        **_connection_options(settings, on_connect),
    )
    return client


def _cluster_client(settings: Settings, on_connect: OnConnect | None, check: ConnectionCheck | None) -> DeferredCluster:
    # RedisCluster connects in its constructor: build it on first use, so a process starts
    # (and serves from MongoDB) while the cluster is unreachable.
    return DeferredCluster(lambda: _connect_cluster(settings, on_connect, check))


def _connect_cluster(settings: Settings, on_connect: OnConnect | None, check: ConnectionCheck | None) -> RedisCluster:
    assert settings.redis_url is not None
    return RedisCluster.from_url(
        settings.redis_url,
        # One bounded, blocking pool per node.
        connection_pool_class=_checked_pool(redis.BlockingConnectionPool, check),
        max_connections=settings.redis_pool_size,
        timeout=REDIS_POOL_TIMEOUT_MS / 1000,
        # Node connections never retry on their own (redis-py); the cluster client retries,
        # refreshing its slot map, as often as a standalone client would.
        retry=_retry(settings),
        # A node that is down leaves its slots failing, not the whole cluster.
        require_full_coverage=False,
        **_connection_options(settings, on_connect, cluster=True),
    )


class _BlockingSentinelPool(redis.sentinel.SentinelConnectionPool, redis.BlockingConnectionPool):
    """SentinelConnectionPool with BlockingConnectionPool's bound: wait `timeout`, then fail."""


_EMBEDDED: redis.Redis | None = None


def _embedded_client() -> redis.Redis:
    # One fakeredis server per process, so every app instance in it shares the data,
    # just as they would share a real Redis.
    global _EMBEDDED
    if _EMBEDDED is None:
        import fakeredis

        log.warning("REDIS_URL is not set: using an embedded in-process fakeredis server (development only)")
        _EMBEDDED = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    return _EMBEDDED
