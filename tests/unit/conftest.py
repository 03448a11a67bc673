"""API test fixtures: one app per cache mode, so every behaviour test runs with and without the cache."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import make_app, make_settings
from tests.support.api import PRODUCTS
from tests.support.events import EventCounter
from tests.support.factories import product_payload
from tests.support.fake_cache import FakeCacheBackend

CreateProduct = Callable[..., dict[str, Any]]


@pytest.fixture(params=["cached", "uncached"])
def cache_mode(request: pytest.FixtureRequest) -> str:
    """Which repository serves the API: the cached one (on fakeredis) or MongoDB alone."""
    return str(request.param)


@pytest.fixture
def make_api_app(cache_mode: str, fake_cache: FakeCacheBackend, events: EventCounter) -> Callable[..., Flask]:
    """Build an app in this cache mode with extra settings. Uncached, the fake cache goes unused."""

    def make(**overrides: Any) -> Flask:
        # Count every read for popularity (not one in ten): a request that should write
        # nothing but counts a read then fails every run, not one run in ten.
        values: dict[str, Any] = {"cache_enabled": cache_mode == "cached", "popularity_sample_rate": 1.0}
        settings = make_settings(**{**values, **overrides})
        return make_app(settings, cache_backend=fake_cache, events=events)

    return make


@pytest.fixture
def api_app(make_api_app: Callable[..., Flask]) -> Flask:
    """The app in this cache mode with the testing settings."""
    return make_api_app()


@pytest.fixture
def api(api_app: Flask) -> FlaskClient:
    return api_app.test_client()


@pytest.fixture
def cached(cache_mode: str) -> bool:
    return cache_mode == "cached"


@pytest.fixture
def create_product(api: FlaskClient, auth: dict[str, str]) -> CreateProduct:
    """POST a factory product (with overrides) and return its JSON body."""

    def create(**overrides: Any) -> dict[str, Any]:
        response = api.post(PRODUCTS, json=product_payload(**overrides), headers=auth)
        assert response.status_code == 201, response.get_json()
        body: dict[str, Any] = response.get_json()
        return body

    return create


@pytest.fixture
def no_unexpected_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail the test if any request reached the catch-all 500 handler (which logs it)."""
    with caplog.at_level(logging.ERROR, logger="jollyjet.http"):
        yield
    # In teardown, caplog.records holds only the teardown phase: ask for the test's own.
    reached = [r.getMessage() for r in caplog.get_records("call") if r.name == "jollyjet.http" and r.exc_info]
    assert not reached, reached
