"""Demo products for the embedded development mode."""

from __future__ import annotations

import logging
from decimal import Decimal

from flask import Flask

from jollyjet.products.domain import ProductQuery
from jollyjet.products.repository import DuplicateSku
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
        return seed_demo_products(services.products)


def seed_demo_products(service: ProductService) -> int:
    """Insert the demo catalog unless products already exist; returns how many were added."""
    if service.count(ProductQuery()).value > 0:
        return 0
    added = 0
    for values in demo_products():
        try:
            service.create(values)
        except DuplicateSku:
            # Every serving process (each gunicorn worker) seeds at start-up, and they
            # pass the empty check together. The
            # unique sku lets one of them insert each product; the others skip it rather
            # than fail to boot.
            continue
        added += 1
    log.info("seeded %d demo products", added)
    return added
