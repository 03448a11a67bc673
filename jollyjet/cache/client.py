"""Builds the redis-py client from settings, with every safety knob set explicitly.

redis-py's defaults are unsafe for a cache in the request path: before 8.1 socket
timeouts are None (a dead Redis hangs a request forever) and 8.1's defaults
(5 s timeouts, retries) can block one call for up to a minute. Here every timeout,
the retry budget and a bounded, blocking pool come from settings.
"""

from __future__ import annotations

import logging

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from jollyjet.settings import Settings

log = logging.getLogger(__name__)


def build_redis_client(settings: Settings) -> redis.Redis:
    """A client on a bounded blocking pool; fakeredis when no REDIS_URL is configured."""
    if settings.redis_url is None:
        return _embedded_client()
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
    )
    return redis.Redis(connection_pool=pool)


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
