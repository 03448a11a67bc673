"""Fixtures of the job tests: an app on its own database and key prefix, over a chosen cache backend.

`backend` is CacheBackend on a private fakeredis server (the real Lua scripts); a module
overrides it for another (e.g. the OutageBackend of the repair tests).
"""

from __future__ import annotations

import pytest
from flask import Flask

from jollyjet.cache.store import CacheBackend
from jollyjet.extensions import Services, services_of
from tests.support.fake_cache import FakeCacheBackend
from tests.support.job_stack import job_app


@pytest.fixture
def backend() -> CacheBackend:
    return FakeCacheBackend()


@pytest.fixture
def app(backend: CacheBackend) -> Flask:
    return job_app(backend)


@pytest.fixture
def services(app: Flask) -> Services:
    return services_of(app)
