"""Product records and pages ↔ cache bytes (through the one serializer, cache/serialization.py)."""

from __future__ import annotations

from typing import Any

from jollyjet.cache import serialization
from jollyjet.cache.backend import VersionedEntry
from jollyjet.products.record import ProductPage, ProductRecord

# What a corrupt or foreign entry can raise while decoding; such an entry is a miss.
DECODE_ERRORS = (serialization.SerializationError, KeyError, TypeError, ValueError)


def encode_record(record: ProductRecord) -> bytes:
    """Product → cache bytes."""
    return serialization.dumps(record.to_dict())


def decode_record(data: bytes) -> ProductRecord:
    """Cache bytes → product."""
    return ProductRecord.from_dict(serialization.loads(data))


def decode_entry(entry: VersionedEntry) -> ProductRecord | None:
    """A versioned entry's product; None for a tombstone (the product was deleted moments ago)."""
    return None if entry.payload is None else decode_record(entry.payload)


def encode_page(page: ProductPage) -> bytes:
    """List page → cache bytes."""
    return serialization.dumps({"items": [r.to_dict() for r in page.items], "total": page.total})


def decode_page(data: bytes) -> ProductPage:
    """Cache bytes → list page."""
    raw: dict[str, Any] = serialization.loads(data)
    return ProductPage(items=[ProductRecord.from_dict(r) for r in raw["items"]], total=raw["total"])


def encode_count(count: int) -> bytes:
    """Count → cache bytes."""
    return serialization.dumps(count)


def decode_count(data: bytes) -> int:
    """Cache bytes → count."""
    return int(serialization.loads(data))
