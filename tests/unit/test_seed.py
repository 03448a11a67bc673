"""Seeding the demo catalog at a web process's start-up (jollyjet/seed.py)."""

from __future__ import annotations

from jollyjet.products.domain import ProductQuery
from jollyjet.seed import demo_products, seed_if_enabled
from jollyjet.services import services_of
from tests.conftest import make_app, make_settings
from tests.support.factories import product_values
from tests.support.fake_cache import FakeCacheBackend


def test_a_half_seeded_catalog_is_completed_not_skipped() -> None:
    # Another gunicorn worker is halfway through seeding when this one starts.
    app = make_app(make_settings(seed_demo_data=True), cache_backend=FakeCacheBackend())
    services = services_of(app)
    with app.app_context():
        for values in demo_products()[:5]:
            services.products.create(values)

    assert seed_if_enabled(app) == len(demo_products()) - 5
    with app.app_context():
        assert services.products.count(ProductQuery()).value == len(demo_products())
    assert seed_if_enabled(app) == 0  # complete: nothing left to add


def test_a_catalog_with_products_of_its_own_is_left_alone() -> None:
    app = make_app(make_settings(seed_demo_data=True), cache_backend=FakeCacheBackend())
    services = services_of(app)
    with app.app_context():
        services.products.create(product_values(sku="OWN-1"))

    assert seed_if_enabled(app) == 0
    with app.app_context():
        assert services.products.count(ProductQuery()).value == 1
