"""Demo products for the embedded development mode."""

from __future__ import annotations

import logging
from decimal import Decimal

from flask import Flask

from jollyjet.products.domain import ProductQuery
from jollyjet.products.repository import DuplicateSku, ProductRepository
from jollyjet.products.representation import cents
from jollyjet.products.service import ProductService
from jollyjet.services import services_of

log = logging.getLogger(__name__)

_CATEGORIES = {
    "audio": ["Headphones", "Speaker", "Earbuds", "Soundbar"],
    "outdoor": ["Tent", "Sleeping Bag", "Headlamp", "Backpack"],
    "kitchen": ["Kettle", "Chef Knife", "Skillet", "Coffee Grinder"],
    "books": ["Field Guide", "Cookbook", "Atlas", "Novel"],
}


def demo_products() -> list[dict[str, object]]:
    """A deterministic catalog of 48 products across four categories."""
    products = []
    for c_index, (category, names) in enumerate(sorted(_CATEGORIES.items())):
        for n_index, name in enumerate(names):
            for variant in range(3):
                price = Decimal(9 + 7 * n_index + 13 * c_index) + Decimal(variant * 5) + Decimal("0.99")
                products.append(
                    {
                        "sku": f"{category[:3].upper()}-{n_index:02d}{variant}",
                        "name": f"{name} {('Lite', 'Classic', 'Pro')[variant]}",
                        "description": f"A {name.lower()} for the JollyJet demo catalog.",
                        "price_cents": cents(price),
                        "currency": "USD",
                        "category": category,
                        "tags": [category, ("budget", "popular", "premium")[variant]],
                        "stock": (n_index * 7 + variant * 3) % 25,
                        "is_active": True,
                    }
                )
    return products


def seed_if_enabled(app: Flask) -> int:
    """At a serving process's start-up: seed when JOLLYJET_SEED_DEMO_DATA is on; returns how many were added."""
    services = services_of(app)
    if not services.settings.seed_demo_data:
        return 0
    with app.app_context():
        return seed_demo_products(services.products, services.mongo)


def seed_demo_products(service: ProductService, database: ProductRepository) -> int:
    """Insert the demo products not there yet, unless the catalog holds products of its own; returns how many."""
    demo = demo_products()
    demo_skus = {str(values["sku"]) for values in demo}
    # Read from MongoDB itself: a start-up check is no client read, and must not fill the cache.
    # One page larger than the demo catalog: anything beyond it cannot all be demo products.
    present = database.list_page(ProductQuery(page_size=len(demo) + 1)).value
    if any(record.sku not in demo_skus for record in present.items):
        return 0  # the catalog has data of its own: leave it alone
    # Every serving process (each gunicorn worker) seeds at start-up, possibly while another
    # is halfway through. Each inserts whatever is still missing, so none finishes, and
    # starts serving, before the whole demo catalog exists; the unique sku lets exactly one
    # insert each product, and the others skip it rather than fail to boot.
    seen = {record.sku for record in present.items}
    added = 0
    for values in demo:
        if values["sku"] in seen:
            continue
        try:
            service.create(values)
        except DuplicateSku:
            continue
        added += 1
    log.info("seeded %d demo products", added)
    return added
