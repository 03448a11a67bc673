"""The product id path segment: anything but the sibling route's name.

`/products/count` is its own route; with a plain string converter, Werkzeug would also
match it as a product id, and OPTIONS (and the Allow header of a 405) would then
advertise PUT, PATCH and DELETE on `/products/count`. Excluding the name keeps each URL
on one route. Malformed ids still reach the handler, which answers 404.
"""

from __future__ import annotations

from typing import Any

from werkzeug.routing import BaseConverter

RESERVED = ("count",)


class ProductIdConverter(BaseConverter):
    """One path segment that is not a reserved sibling route name."""

    regex = "(?!(?:" + "|".join(RESERVED) + r")(?:/|$))[^/]+"


def product_id_schema(_: ProductIdConverter) -> dict[str, Any]:
    """How the OpenAPI document describes the segment."""
    # In words, not as {"not": {"enum": [...]}}: a generator that tries schema-violating
    # values would send exactly /products/count, which is a valid URL of another operation.
    return {"type": "string", "description": "Product id (any segment but " + ", ".join(RESERVED) + ")"}
