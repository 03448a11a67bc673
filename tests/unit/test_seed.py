"""Seeding (jollyjet/commands.py): a deterministic catalog, inserted once however often it runs."""

from __future__ import annotations

from decimal import Decimal

from jollyjet.commands import DEMO_COUNT, catalog_products, seed_products
from jollyjet.extensions import services_of
from jollyjet.products.record import ProductQuery
from jollyjet.products.schemas import ProductInputSchema
from tests.conftest import make_app, make_settings
from tests.support.fake_cache import FakeCacheBackend


def test_the_demo_catalog_is_four_categories_of_twelve() -> None:
    demo = list(catalog_products())
    assert len(demo) == DEMO_COUNT == 48
    assert {c: sum(p["category"] == c for p in demo) for c in ("audio", "books", "kitchen", "outdoor")} == {
        "audio": 12,
        "books": 12,
        "kitchen": 12,
        "outdoor": 12,
    }
    # The first DEMO_COUNT products of any larger catalog are the demo catalog.
    assert list(catalog_products(DEMO_COUNT * 3))[:DEMO_COUNT] == demo


def test_generated_products_are_valid_api_input_with_distinct_skus() -> None:
    schema = ProductInputSchema()
    products = list(catalog_products(5000, ["toys & games", "audio", "  Ünïcode  "]))
    assert len({p["sku"] for p in products}) == 5000
    assert [p["category"] for p in products[:4]] == ["toys & games", "audio", "  Ünïcode  ", "toys & games"]
    for values in products[::97]:
        api_form = {k: v for k, v in values.items() if k != "price_cents"}
        schema.load({**api_form, "price": str(Decimal(values["price_cents"]) / 100)})  # raises if invalid


def test_a_half_seeded_catalog_is_completed_and_a_second_run_adds_nothing() -> None:
    app = make_app(make_settings(), cache_backend=FakeCacheBackend())  # with the unique sku index
    services = services_of(app)
    ticks: list[int] = []
    with app.app_context():
        first = seed_products(services.products, catalog_products(5))
        second = seed_products(services.products, catalog_products(60), ticks.append)
        again = seed_products(services.products, catalog_products(60))
        total = services.products.count(ProductQuery()).value

    assert (first.added, first.present) == (5, 0)
    assert (second.added, second.present) == (55, 5) and sum(ticks) == 60
    assert (again.added, again.present) == (0, 60) and total == 60
