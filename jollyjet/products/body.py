"""A product as its API JSON body: rendered once, stored in the cache entry, served as bytes.

The body is exactly what GET /api/v1/products/<id> returns, so a cache hit sends the
stored bytes without decoding or re-encoding them, and a list response joins its
items' bodies. It is also the cache's stored format of a product (keys.SCHEMA_VERSION
names it): changing product_to_api changes the cached shape and must bump the schema.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import orjson

from jollyjet.products.domain import ProductRecord
from jollyjet.products.representation import product_from_api, product_to_api


@dataclass(frozen=True, slots=True)
class ProductBody:
    """One product's API body and the version its ETag names."""

    version: int
    body: bytes
    # The record it was rendered from, when at hand (a database read): spares a parse.
    record: ProductRecord | None = None


def render(record: ProductRecord) -> bytes:
    """The API body of one product (the bytes a cache entry stores)."""
    # Plain str/int/bool data: byte for byte what cache/keys.dumps gives (codec.PRODUCT).
    return orjson.dumps(product_to_api(record))


def parse(body: bytes) -> ProductRecord:
    """The record inside a body; raises one of codec.DECODE_ERRORS for bytes that are not one."""
    data = orjson.loads(body)  # orjson.JSONDecodeError is a ValueError
    if not isinstance(data, dict):
        raise TypeError("a product body is a JSON object")
    return product_from_api(data)


def of(record: ProductRecord) -> ProductBody:
    """A record as a served body."""
    return ProductBody(record.version, render(record), record)


def names(product_id: str, body: bytes) -> bool:
    """Cheap identity check before serving stored bytes unparsed: a body of this product, not garbage."""
    return body.startswith(b'{"id":"' + product_id.encode() + b'",')


def json_array(bodies: Iterable[bytes]) -> bytes:
    """Bodies joined into one JSON array (byte for byte what serializing the list would give)."""
    return b"[" + b",".join(bodies) + b"]"


@dataclass(frozen=True, slots=True)
class PageOfBodies:
    """One list page as its items' API bodies (in order) and the total matching its filters."""

    ids: list[str]
    bodies: list[bytes]
    total: int
    # The records the bodies were rendered from, when at hand (a database read).
    records: list[ProductRecord] | None = None
    # Each item's version when the page was read from the database (stored with the ids).
    versions: list[int] | None = None
    # Read from the cache with items newer than the stored page (see repository._page_from_ids).
    moved_on: bool = False


def page_of(ids_total: tuple[list[ProductRecord], int]) -> PageOfBodies:
    """A page of records (and its total) as bodies."""
    records, total = ids_total
    return PageOfBodies(
        [r.id for r in records], [render(r) for r in records], total, records, [r.version for r in records]
    )
