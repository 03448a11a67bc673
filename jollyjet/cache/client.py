"""Builds the redis-py client from settings, with every safety knob set explicitly.

redis-py's defaults are unsafe for a cache in the request path: before 8.1 socket
timeouts are None (a dead Redis hangs a request forever) and 8.1's defaults
(5 s timeouts, retries) can block one call for up to a minute. Here every timeout,
the retry budget and a bounded, blocking pool come from settings.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import redis
from redis.backoff import ExponentialBackoff
from redis.connection import AbstractConnection
from redis.retry import Retry

from jollyjet.settings import Settings

log = logging.getLogger(__name__)


def build_redis_client(
    settings: Settings, *, on_connect: Callable[[AbstractConnection], None] | None = None
) -> redis.Redis:
    """A client on a bounded blocking pool; fakeredis when no REDIS_URL is configured.

    on_connect runs with each new connection after its handshake, before its first command;
    an exception it raises fails that connection.
    """
    if settings.redis_url is None:
        return _embedded_client()
    extra = {} if on_connect is None else {"redis_connect_func": _handshake_then(on_connect)}
    retry = Retry(ExponentialBackoff(cap=0.05, base=0.005), settings.redis_retries)
    pool = redis.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_pool_size,
        # How long a request waits for a free connection before failing fast.
        timeout=settings.redis_pool_timeout_ms / 1000,
        socket_timeout=settings.redis_socket_timeout_ms / 1000,
        socket_connect_timeout=settings.redis_connect_timeout_ms / 1000,
        socket_keepalive=True,
        health_check_interval=settings.redis_health_check_interval_s,
        retry=retry,
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        **extra,
    )
    return redis.Redis(connection_pool=pool)


def _handshake_then(on_connect: Callable[[AbstractConnection], None]) -> Callable[[AbstractConnection], None]:
    def connect(connection: AbstractConnection) -> None:
        connection.on_connect()  # redis-py's own handshake (AUTH, HELLO, SELECT) first
        on_connect(connection)

    return connect


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
