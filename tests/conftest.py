"""Fixture chain: settings → app → client → auth headers; real redis-server fixtures."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from jollyjet import create_app
from jollyjet.cache.events import EventCounter
from jollyjet.settings import Settings, load_settings
from tests.support.memory_backend import MemoryCacheBackend
from tests.support.redis_server import RedisServer

TOKEN = "test-token-0123456789"


def make_settings(**overrides: Any) -> Settings:
    """Testing settings with an isolated mongomock database and key prefix."""
    unique = uuid.uuid4().hex[:12]
    values: dict[str, Any] = {
        "env": "testing",
        "mongodb_uri": f"mongomock://localhost/test_{unique}",
        "cache_key_prefix": f"t{unique}",
        "api_tokens_raw": TOKEN,
        "log_level": "WARNING",
    }
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture
def settings() -> Settings:
    return make_settings()


@pytest.fixture
def memory_cache() -> MemoryCacheBackend:
    return MemoryCacheBackend()


@pytest.fixture
def events() -> EventCounter:
    return EventCounter()


@pytest.fixture
def app(settings: Settings, memory_cache: MemoryCacheBackend, events: EventCounter) -> Flask:
    """The app on mongomock with the in-memory cache backend (unit level)."""
    return create_app(settings, cache_backend=memory_cache, events=events)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server for the session; tests isolate by key prefix."""
    server = RedisServer()
    server.start()
    yield server
    server.close()


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own, which the test may stop and start."""
    server = RedisServer()
    server.start()
    yield server
    server.close()


@pytest.fixture
def redis_app(redis_server: RedisServer, events: EventCounter) -> Flask:
    """The app on mongomock and the shared real Redis (integration level)."""
    return create_app(make_settings(redis_url=redis_server.url), events=events)
