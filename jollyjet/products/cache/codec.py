"""Product records, pages, counts and category lists ↔ cache bytes, through the one serializer (cache/keys.py).

A product entry stores the product's API body (products/body.py), so a hit is served
as stored; PRODUCT decodes it back into a record for the jobs that compare records.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from jollyjet.cache import keys
from jollyjet.products.domain import CategoryCount, ProductRecord
from jollyjet.products.representation import product_from_api, product_to_api

T = TypeVar("T")


class PageMovedOn(ValueError):
    """A stored page one of whose items changed since it was stored: a miss, not damage."""


# What a corrupt or foreign entry can raise while decoding; such an entry is a miss.
# (ArithmeticError: decimal.InvalidOperation from a price that is not a number.)
DECODE_ERRORS = (keys.SerializationError, KeyError, TypeError, ValueError, AttributeError, ArithmeticError)


@dataclass(frozen=True)
class Codec(Generic[T]):
    """One cached shape: to and from plain data, which the serializer turns into bytes."""

    to_plain: Callable[[T], Any]
    from_plain: Callable[[Any], T]

    def encode(self, value: T) -> bytes:
        """Value → cache bytes."""
        return keys.dumps(self.to_plain(value))

    def decode(self, data: bytes) -> T:
        """Cache bytes → value; raises one of DECODE_ERRORS for bytes it cannot read."""
        return self.from_plain(keys.loads(data))


# Byte for byte products/body.render: the entry is the API body.
PRODUCT: Codec[ProductRecord] = Codec(product_to_api, product_from_api)
COUNT: Codec[int] = Codec(lambda count: count, int)
CATEGORIES: Codec[list[CategoryCount]] = Codec(
    lambda rows: [[r.category, r.count] for r in rows],
    lambda raw: [CategoryCount(category=c, count=n) for c, n in raw],
)
