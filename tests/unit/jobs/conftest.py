"""Fixtures of the job tests: an app on its own database and key prefix, over a chosen cache backend.

`backend` runs each test on the memory backend and on redis-py over fakeredis; a module
overrides it for one backend (e.g. the OutageBackend of the repair tests).
"""

from __future__ import annotations

import pytest
from flask import Flask

from jollyjet.cache.backend import CacheBackend
from jollyjet.services import Services, services_of
from tests.support.job_stack import BACKENDS, job_app, make_backend


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> CacheBackend:
    return make_backend(request.param)


@pytest.fixture
def app(backend: CacheBackend) -> Flask:
    return job_app(backend)


@pytest.fixture
def services(app: Flask) -> Services:
    return services_of(app)
