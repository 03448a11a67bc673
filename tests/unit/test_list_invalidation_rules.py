"""The invalidation rules of lists, counts and categories: which aspects of which filter sets a write changes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from jollyjet.products.catalog_writes import changed_aspects, matches
from jollyjet.products.record import GROUP_CATEGORY, MEMBERS, ProductQuery, ProductRecord, aspects, order_aspect

NOW = datetime(2026, 1, 1, tzinfo=UTC)
LATER = NOW + timedelta(seconds=1)
BASE = ProductRecord(
    id="a" * 24,
    sku="S-1",
    name="Blue Lamp",
    description="",
    price_cents=2500,
    currency="USD",
    category="home",
    tags=("light", "sale"),
    stock=3,
    is_active=True,
    version=2,
    created_at=NOW,
    updated_at=NOW,
)


def test_every_filter_field_is_matched_exactly() -> None:
    assert matches({}, BASE)
    assert matches({"category": "home"}, BASE) and not matches({"category": "garden"}, BASE)
    assert matches({"tag": "sale"}, BASE) and not matches({"tag": "new"}, BASE)
    assert matches({"min_price_cents": 2500, "max_price_cents": 2500}, BASE)
    assert not matches({"min_price_cents": 2501}, BASE) and not matches({"max_price_cents": 2499}, BASE)
    assert matches({"in_stock": True}, BASE) and not matches({"in_stock": False}, BASE)
    assert matches({"in_stock": False}, replace(BASE, stock=0)) and matches(
        {"in_stock": False}, replace(BASE, stock=-1)
    )
    assert matches({"is_active": True}, BASE) and not matches({"is_active": False}, BASE)
    assert matches({"q": "nothing like it"}, BASE)  # q is assumed to match: a superset is safe
    assert matches({"some_future_filter": 1}, BASE)  # unknown conditions are ignored, never narrowing
    assert not matches({"category": "home", "tag": "new"}, BASE)  # all conditions must hold


def test_counts_depend_on_members_and_pages_also_on_their_sort_field() -> None:
    assert aspects("count", ProductQuery(sort="price")) == [MEMBERS]
    assert aspects("list", ProductQuery(sort="-price")) == [MEMBERS, "order.price_cents"]
    assert aspects("list", ProductQuery()) == [MEMBERS, "order.created_at"]
    assert order_aspect("stock") == "order.stock"
    # The category list: a count per category, so its members and their grouping.
    assert aspects("categories", ProductQuery()) == [MEMBERS, GROUP_CATEGORY]


@pytest.mark.parametrize(
    ("filters", "after", "expected"),
    [
        # A stock change that keeps in_stock: only the order by stock and updated_at move.
        ({"in_stock": True}, {"stock": 9, "updated_at": LATER}, {"order.stock", "order.updated_at"}),
        ({"in_stock": True}, {"stock": 0}, {MEMBERS}),  # leaves "in stock"
        ({"in_stock": False}, {"stock": 0}, {MEMBERS}),  # enters "out of stock"
        ({"category": "home"}, {"category": "garden"}, {MEMBERS}),  # moves between categories
        ({"category": "garden"}, {"category": "garden"}, {MEMBERS}),
        ({"category": "toys"}, {"category": "garden"}, set()),  # neither before nor after: untouched
        ({}, {"category": "garden"}, {GROUP_CATEGORY}),  # stays in the set, moves between groups
        ({"in_stock": True}, {"category": "garden", "stock": 4}, {GROUP_CATEGORY, "order.stock"}),
        ({"min_price_cents": 2000, "max_price_cents": 3000}, {"price_cents": 3500}, {MEMBERS}),  # leaves the range
        ({"min_price_cents": 3000}, {"price_cents": 3500}, {MEMBERS}),  # enters the range
        ({"max_price_cents": 3000}, {"price_cents": 2000}, {"order.price_cents"}),  # stays in, order may move
        ({"tag": "sale"}, {"tags": ("light",)}, {MEMBERS}),
        ({"tag": "new"}, {"tags": ("light", "sale", "new")}, {MEMBERS}),
        ({"is_active": True}, {"is_active": False}, {MEMBERS}),
        ({}, {"description": "new words"}, set()),  # changes nothing any query filters or sorts on
        ({}, {"name": "Red Lamp"}, {"order.name"}),
        ({"q": "lamp"}, {"name": "Red Chair"}, {MEMBERS}),  # a name change may move a product in or out of q
        ({"q": "lamp"}, {"stock": 1}, {"order.stock"}),
    ],
)
def test_an_update_changes_only_the_aspects_it_moved(
    filters: dict[str, object], after: dict[str, object], expected: set[str]
) -> None:
    updated = replace(BASE, version=3, **after)  # type: ignore[arg-type]
    assert changed_aspects(filters, BASE, updated) == expected


def test_creates_and_deletes_change_the_members_of_the_filters_they_match() -> None:
    assert changed_aspects({"category": "home"}, None, BASE) == {MEMBERS}
    assert changed_aspects({"category": "home"}, BASE, None) == {MEMBERS}
    assert changed_aspects({"category": "garden"}, None, BASE) == set()
    assert changed_aspects({"category": "garden"}, BASE, None) == set()
    assert changed_aspects({}, None, None) == set()
