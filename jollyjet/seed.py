"""Seed products: the 48-product demo catalog, or as many generated products as asked.

Run by `flask --app app seed` (jollyjet/commands.py), and once by the embedded
development mode (`python -m jollyjet` on mongomock, whose store starts empty). Never
by a serving process on real servers: a catalog is seeded on purpose, once.

Products are deterministic: the n-th product of a category always has the same sku, so
a second run inserts only what is still missing (the unique sku index turns each
duplicate into DuplicateSku, which is skipped). Every product goes through
services.products, so the cache is written through and lists are invalidated as for any client write.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from jollyjet.products.catalog import Catalog
from jollyjet.products.record import cents
from jollyjet.products.repository import DuplicateSku

log = logging.getLogger(__name__)

_CATEGORIES = {
    "audio": ["Headphones", "Speaker", "Earbuds", "Soundbar"],
    "books": ["Field Guide", "Cookbook", "Atlas", "Novel"],
    "kitchen": ["Kettle", "Chef Knife", "Skillet", "Coffee Grinder"],
    "outdoor": ["Tent", "Sleeping Bag", "Headlamp", "Backpack"],
}
DEMO_CATEGORIES = tuple(_CATEGORIES)
_OTHER_NAMES = ["Gadget", "Kit", "Set", "Bundle"]  # for a category the demo catalog does not have
_VARIANTS = ("Lite", "Classic", "Pro")
_PER_SERIES = len(_OTHER_NAMES) * len(_VARIANTS)  # products of one category in one series: 12
DEMO_COUNT = len(DEMO_CATEGORIES) * _PER_SERIES  # 48


@dataclass
class SeedReport:
    """What one seeding run did."""

    added: int = 0
    present: int = 0  # its sku was taken already (an earlier run, or another seeder)


def _sku_prefix(category: str) -> str:
    # The demo categories keep their readable prefixes; any other category (free text, up to
    # 100 characters of anything) gets a hash of its name: a valid sku, and one per category.
    if category in _CATEGORIES:
        return category[:3].upper()
    return "C" + hashlib.blake2b(category.encode(), digest_size=4).hexdigest().upper()


def _product(category: str, position: int, index: int) -> dict[str, Any]:
    """The index-th product of a category (position: its place in DEMO_CATEGORIES, or 0)."""
    series, within = divmod(index, _PER_SERIES)
    n_index, variant = divmod(within, len(_VARIANTS))
    name = _CATEGORIES.get(category, _OTHER_NAMES)[n_index]
    # Series 0 of the demo categories is the demo catalog, exactly as it always was.
    price = Decimal(9 + 7 * n_index + 13 * position + variant * 5 + series % 50) + Decimal("0.99")
    suffix = f"-{series}" if series else ""
    return {
        "sku": f"{_sku_prefix(category)}-{n_index:02d}{variant}{suffix}",
        "name": f"{name} {_VARIANTS[variant]}" + (f" {series + 1}" if series else ""),
        "description": f"A {name.lower()} for the JollyJet demo catalog.",
        "price_cents": cents(price),
        "currency": "USD",
        "category": category,
        "tags": [category.strip()[:50], ("budget", "popular", "premium")[variant]],
        "stock": (n_index * 7 + variant * 3 + series) % 25,
        "is_active": True,
    }


def catalog_products(count: int = DEMO_COUNT, categories: Sequence[str] = DEMO_CATEGORIES) -> Iterator[dict[str, Any]]:
    """The first `count` products, deterministic, taking the categories in turn.

    With the defaults: the demo catalog (4 categories x 4 names x 3 variants)."""
    for i in range(count):
        index, c_index = divmod(i, len(categories))
        category = categories[c_index]
        position = DEMO_CATEGORIES.index(category) if category in _CATEGORIES else 0
        yield _product(category, position, index)


def seed_products(
    repository: Catalog, products: Iterator[dict[str, Any]], progress: Callable[[int], None] | None = None
) -> SeedReport:
    """Create each product whose sku is not taken yet; progress(1) after each. Needs the unique sku index."""
    report = SeedReport()
    for values in products:
        try:
            repository.create(values)
        except DuplicateSku:
            report.present += 1
        else:
            report.added += 1
        if progress is not None:
            progress(1)
    log.info("seeded %d products (%d already present)", report.added, report.present)
    return report
