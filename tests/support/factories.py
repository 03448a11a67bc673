"""Product payloads (API bodies) and document values (service/repository input) for tests; served bodies decoded."""

from __future__ import annotations

import itertools
from typing import Any

from jollyjet.products.record import ProductBody, ProductRecord, Read, parse

_counter = itertools.count(1)


def product_payload(**overrides: Any) -> dict[str, Any]:
    """A valid POST body with a unique sku; overrides replace fields."""
    n = next(_counter)
    payload: dict[str, Any] = {
        "sku": f"SKU-{n:06d}",
        "name": f"Test product {n}",
        "description": "A product made by the test factory.",
        "price": "19.99",
        "currency": "USD",
        "category": "testing",
        "tags": ["test"],
        "stock": 5,
        "is_active": True,
    }
    payload.update(overrides)
    return payload


def product_values(**overrides: Any) -> dict[str, Any]:
    """Document values for the repositories' create, with a unique sku."""
    values: dict[str, Any] = {
        "sku": f"DOC-{next(_counter):06d}",
        "name": "Lamp",
        "description": "",
        "price_cents": 1999,
        "currency": "USD",
        "category": "home",
        "tags": ["light"],
        "stock": 3,
        "is_active": True,
    }
    values.update(overrides)
    return values


def record_read(read: Read[ProductBody | None]) -> Read[ProductRecord | None]:
    """A get_body read as the record its served bytes hold (what a client decodes), with the same source."""
    return Read(None if read.value is None else parse(read.value.body), read.source)
