"""The clients build_redis_client makes carry the configured timeouts, retries and pool bounds (nothing connects)."""

from __future__ import annotations

import socket
import threading

import pytest
import redis
from redis.sentinel import SentinelConnectionPool

from jollyjet.cache.client import build_redis_client
from tests.conftest import make_settings

KNOBS = {"redis_timeout_ms": 150}


@pytest.fixture(autouse=True)
def _fixed_knobs(monkeypatch: pytest.MonkeyPatch) -> None:
    # Retries, the pool size and wait are constants of the service (jollyjet/settings.py), not settings.
    monkeypatch.setattr("jollyjet.cache.client.REDIS_RETRIES", 2)
    monkeypatch.setattr("jollyjet.cache.client.REDIS_POOL_SIZE", 7)
    monkeypatch.setattr("jollyjet.cache.client.REDIS_POOL_TIMEOUT_MS", 90)


def test_standalone_client_is_bounded() -> None:
    client = build_redis_client(make_settings(redis_url="redis://127.0.0.1:1/0", **KNOBS))
    pool = client.connection_pool
    assert isinstance(pool, redis.BlockingConnectionPool)
    assert (pool.max_connections, pool.timeout) == (7, 0.09)
    kwargs = pool.connection_kwargs
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (0.15, 0.15)
    assert kwargs["retry"].get_retries() == 2


def test_sentinel_client_is_bounded_on_master_and_sentinel_connections() -> None:
    settings = make_settings(
        redis_url="redis+sentinel://:data-secret@127.0.0.1:1,127.0.0.1:2/catalog?sentinel_password=sentinel-secret",
        **KNOBS,
    )
    client = build_redis_client(settings)
    pool = client.connection_pool
    # Sentinel discovery and a blocking, bounded pool at once.
    assert isinstance(pool, SentinelConnectionPool) and isinstance(pool, redis.BlockingConnectionPool)
    assert (pool.max_connections, pool.timeout, pool.service_name) == (7, 0.09, "catalog")
    kwargs = pool.connection_kwargs
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (0.15, 0.15)
    assert kwargs["retry"].get_retries() == 2 and kwargs["password"] == "data-secret"
    for sentinel in pool.sentinel_manager.sentinels:
        sentinel_kwargs = sentinel.connection_pool.connection_kwargs
        # redis-py's default would retry each sentinel 3 times with 1-10 s backoff.
        assert sentinel_kwargs["retry"].get_retries() == 2
        assert (sentinel_kwargs["socket_timeout"], sentinel_kwargs["socket_connect_timeout"]) == (0.15, 0.15)
        assert sentinel_kwargs["password"] == "sentinel-secret"


def test_the_connection_hook_survives_a_server_that_drops_every_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """A listener that accepts and closes (a proxy whose upstream is down): a ConnectionError, not a RecursionError.

    With redis-py's handshake run *with* its health check inside the hook, the overdue
    health-check PING failed, reconnected, ran the hook again, and so on without end.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.1)
    stop = threading.Event()

    def drop_everything() -> None:
        while not stop.is_set():
            try:
                accepted, _ = listener.accept()
            except TimeoutError:
                continue
            accepted.close()

    thread = threading.Thread(target=drop_everything, daemon=True)
    thread.start()
    calls: list[object] = []
    try:
        port = listener.getsockname()[1]
        monkeypatch.setattr("jollyjet.cache.client.REDIS_HEALTH_CHECK_INTERVAL_S", 1)
        settings = make_settings(redis_url=f"redis://127.0.0.1:{port}/0", **KNOBS)
        client = build_redis_client(settings, on_connect=calls.append)
        with pytest.raises(redis.ConnectionError):
            client.ping()
        assert calls == []  # the hook never saw a connection whose handshake failed
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()
