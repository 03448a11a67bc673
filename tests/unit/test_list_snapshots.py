"""A cached list never mixes two moments: page membership and item bodies, and the before-images writes use.

Both guard the invalidation by filter and aspect (docs/cache.md, "Lists and counts"):

- a page is stored as ids with the versions it was read at; an item whose entry is older
  than that (the write that the page already reflects has not updated the entry yet)
  makes the page a miss instead of a view of a state that never was;
- a write compares itself with the previous version only once that version's own write
  has finished invalidating (the entry is *settled*); otherwise it invalidates every
  list and count, since it may answer its client before the earlier write is done.
"""

from __future__ import annotations

import logging

import pytest
from flask import Flask

from jollyjet.extensions import services_of
from tests.support.factories import product_payload
from tests.support.fake_cache import FakeCacheBackend, write_entry

PRODUCTS = "/api/v1/products"


def test_a_page_read_after_a_write_whose_entry_lags_is_recomputed(
    app: Flask, fake_cache: FakeCacheBackend, auth: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    client = app.test_client()
    product = client.post(PRODUCTS, json=product_payload(category="snap"), headers=auth).get_json()
    one = f"{PRODUCTS}/{product['id']}"
    old_body = client.get(one).get_data()  # version 1, as rendered and cached
    assert client.patch(one, json={"description": "v2"}, headers=auth).get_json()["version"] == 2
    listing = f"{PRODUCTS}?category=snap"
    assert client.get(listing).headers["X-Cache"] == "MISS"  # the page, read at version 2
    # The entry falls behind the page: as if the page were read after a write whose cache
    # update has not landed yet.
    entry = services_of(app).require_cache().keys.product(product["id"])
    fake_cache.delete(entry.entry)
    assert write_entry(fake_cache, entry, old_body, 1, 60)

    with caplog.at_level(logging.DEBUG, logger="jollyjet.products.catalog"):
        response = client.get(listing)
    assert response.headers["X-Cache"] == "MISS"
    assert [(p["id"], p["version"], p["description"]) for p in response.get_json()] == [(product["id"], 2, "v2")]
    # Routine under writes, so a debug line, not a warning about a damaged entry.
    moved = [r for r in caplog.records if "moved on" in r.getMessage()]
    assert moved and all(r.levelno == logging.DEBUG for r in moved)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "undecodable" in r.getMessage()]


def test_a_write_uses_the_previous_version_as_before_image_only_once_it_is_settled(
    fake_cache: FakeCacheBackend,
) -> None:
    key, lease = "t:v2:product:{6b0000000000000000000001}", "t:v2:product:{6b0000000000000000000001}:lease"
    assert fake_cache.swap_versioned(key, lease, key + ":pending", b"one", 1, 60, "") == (True, None)
    # Version 1's write has not finished invalidating: no before-image for version 2.
    assert fake_cache.swap_versioned(key, lease, key + ":pending", b"two", 2, 60, "") == (True, None)
    assert fake_cache.mark_settled(key, 2)
    assert fake_cache.swap_versioned(key, lease, key + ":pending", b"three", 3, 60, "") == (True, b"two")
    assert not fake_cache.mark_settled(key, 2)  # version 3 is cached now
