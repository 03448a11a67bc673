"""Fixture chain: settings → app → client → auth headers; real redis-server fixtures."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from jollyjet import create_app
from jollyjet.app_factory import build_services
from jollyjet.cache.store import CacheBackend
from jollyjet.commands import ensure_indexes
from jollyjet.ops.metrics import PrometheusEvents
from jollyjet.settings import Settings, load_settings
from tests.support.events import EventCounter, TeeEvents
from tests.support.fake_cache import FakeCacheBackend
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
    # Settings ignore names they do not know: a stale override would silently change nothing.
    unknown = set(overrides) - set(Settings.model_fields)
    assert not unknown, f"not settings: {sorted(unknown)}"
    values.update(overrides)
    return load_settings(**values)


def make_app(
    settings: Settings, *, cache_backend: CacheBackend | None = None, events: EventCounter | None = None
) -> Flask:
    """The app over services built with this test's cache backend and event counter (Redis's when None).

    On mongomock, with the indexes a deployment's release phase creates (`flask --app app
    ensure-indexes`): the app itself never creates one, and the unique sku index is what
    makes a duplicate sku a 409."""
    sink = None if events is None else TeeEvents([events, PrometheusEvents()])  # the metrics count too
    app = create_app(settings, build_services(settings, cache_backend=cache_backend, events=sink))
    if settings.embedded_mongo:
        ensure_indexes()
    return app


@pytest.fixture
def settings() -> Settings:
    return make_settings()


@pytest.fixture
def fake_cache() -> FakeCacheBackend:
    """CacheBackend on a private fakeredis server (the real Lua scripts)."""
    return FakeCacheBackend()


@pytest.fixture
def events() -> EventCounter:
    return EventCounter()


@pytest.fixture
def app(settings: Settings, fake_cache: FakeCacheBackend, events: EventCounter) -> Flask:
    """The app on mongomock with the cache on fakeredis (unit level)."""
    return make_app(settings, cache_backend=fake_cache, events=events)


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
    return make_app(make_settings(redis_url=redis_server.url), events=events)
