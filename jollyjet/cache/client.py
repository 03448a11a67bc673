"""Redis calls that fail fast: redis-py clients with every safety knob set explicitly (the breaker: fence.py).

redis-py's defaults hang a request on a dead Redis (no socket timeout before 8.1; 8.1's retries
can block a call for a minute). Every timeout, the retry budget and a bounded, blocking pool are
set here for each topology (docs/redis-topologies.md). `on_connect` runs on each new connection
after its handshake, `check` each time a pool hands one out: together, the cache epoch's fence.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.cluster import RedisCluster
from redis.commands.core import Script
from redis.connection import AbstractConnection
from redis.exceptions import RedisClusterException
from redis.retry import Retry
from redis.sentinel import Sentinel

from jollyjet.settings import (
    REDIS_HEALTH_CHECK_INTERVAL_S,
    REDIS_POOL_SIZE,
    REDIS_POOL_TIMEOUT_MS,
    REDIS_RETRIES,
    RedisTopology,
    Settings,
)

log = logging.getLogger(__name__)
# on_connect and check: each raises to fail the connection (or the call that was handed it).
OnConnect = Callable[[AbstractConnection], None]
ConnectionCheck = Callable[[AbstractConnection], None]
# Every error a Redis-side failure raises; the cluster client raises some (an uncovered slot) outside RedisError.
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
        return DeferredCluster(lambda: _cluster_client(settings, on_connect, check))
    assert settings.redis_url is not None
    pool_class = _checked_pool(redis.BlockingConnectionPool, check)
    return redis.Redis(connection_pool=pool_class.from_url(settings.redis_url, **_options(settings, on_connect)))


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


def _retry() -> Retry:
    return Retry(ExponentialBackoff(cap=0.05, base=0.005), REDIS_RETRIES)


def _options(settings: Settings, on_connect: OnConnect | None, cluster: bool = False) -> dict[str, Any]:
    """Every topology's knobs: timeouts, the pool's bound and wait (then fail fast), retries, the hook."""
    options: dict[str, Any] = {
        "socket_timeout": settings.redis_timeout_ms / 1000,
        "socket_connect_timeout": settings.redis_timeout_ms / 1000,
        "socket_keepalive": True,
        "health_check_interval": REDIS_HEALTH_CHECK_INTERVAL_S,
        "max_connections": REDIS_POOL_SIZE,
        "timeout": REDIS_POOL_TIMEOUT_MS / 1000,
        # A cluster's node connections never retry (redis-py): the cluster client does, refreshing its slot map.
        "retry": _retry(),
    }
    if not cluster:
        options["retry_on_error"] = [redis.ConnectionError, redis.TimeoutError]
    if on_connect is not None:
        # RedisCluster runs the handshake itself and then calls redis_connect_func; the
        # other clients replace their handshake with it, so it must run the handshake first.
        options["redis_connect_func"] = on_connect if cluster else _handshake_then(on_connect)
    return options


def _handshake_then(on_connect: OnConnect) -> OnConnect:
    def connect(connection: AbstractConnection) -> None:
        # Without the health check, as redis-py's own handshake on a fresh socket: with it, an
        # overdue health-check PING that fails reconnects, which runs this function again, forever.
        connection.on_connect_check_health(check_health=False)
        on_connect(connection)

    return connect


def _sentinel_client(settings: Settings, on_connect: OnConnect | None, check: ConnectionCheck | None) -> redis.Redis:
    target = settings.redis_sentinel
    tls: dict[str, Any] = {"ssl": True, "ssl_ca_certs": target.ca_file} if target.tls else {}
    sentinels = list(target.sentinels)
    sentinel = Sentinel(
        sentinels,
        # With several sentinels, take a master's address only from one that sees another
        # sentinel: a sentinel cut off from the others may still name the old master.
        min_other_sentinels=1 if len(sentinels) > 1 else 0,
        # Without an explicit retry redis-py 8 retries 3 times with 1-10 s backoff per sentinel:
        # a new master connection would block for ~20 s while the sentinels do not answer.
        sentinel_kwargs={
            "socket_timeout": settings.redis_timeout_ms / 1000,
            "socket_connect_timeout": settings.redis_timeout_ms / 1000,
            "retry": _retry(),
            "password": target.sentinel_password,
            "username": None,
            **tls,
        },
    )
    return sentinel.master_for(
        target.master,
        connection_pool_class=_checked_pool(_BlockingSentinelPool, check),
        username=target.username,
        password=target.password,
        **tls,
        **_options(settings, on_connect),
    )


def _cluster_client(settings: Settings, on_connect: OnConnect | None, check: ConnectionCheck | None) -> RedisCluster:
    return RedisCluster.from_url(
        settings.redis_node_url,
        connection_pool_class=_checked_pool(redis.BlockingConnectionPool, check),  # one per node
        require_full_coverage=False,  # a node that is down leaves its slots failing, not the whole cluster
        **_options(settings, on_connect, cluster=True),
    )


class DeferredCluster:
    """A RedisCluster built on first use (it connects in its constructor, and a cluster down at start must
    not stop a process): every attribute is the built cluster client's."""

    def __init__(self, build: Callable[[], RedisCluster]) -> None:
        self._build = build
        self._cluster: RedisCluster | None = None
        self._lock = threading.Lock()

    def cluster(self) -> RedisCluster:
        """The cluster client, built now if it was not yet (raises what building raises)."""
        if self._cluster is None:
            with self._lock:
                if self._cluster is None:
                    self._cluster = self._build()
        return self._cluster

    def register_script(self, script: str) -> Script:
        """A Lua script whose calls go to the cluster client (built on the first)."""
        # Bytes: Script asks the client for an encoder only for a str, which would build the cluster now.
        return Script(self, script.encode())  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cluster(), name)


# What the service calls a Redis client: every topology's client has the same command API.
RedisClient = redis.Redis | RedisCluster | DeferredCluster


class _BlockingSentinelPool(redis.sentinel.SentinelConnectionPool, redis.BlockingConnectionPool):
    """SentinelConnectionPool with BlockingConnectionPool's bound: wait `timeout`, then fail."""


@functools.cache
def _embedded_client() -> redis.Redis:
    """One fakeredis server per process: every app instance in it shares the data, as with a real Redis."""
    import fakeredis

    log.warning("REDIS_URL is not set: using an embedded in-process fakeredis server (development only)")
    return fakeredis.FakeRedis(server=fakeredis.FakeServer())
