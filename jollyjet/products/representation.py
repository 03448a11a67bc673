"""Conversions between the API's shapes and the product records. One place for money maths."""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import datetime
from decimal import Decimal
from typing import Any

from jollyjet.products.domain import ProductQuery, ProductRecord


def cents(amount: Decimal) -> int:
    """Exact decimal (≤ 2 places, validated) → integer cents."""
    return int(amount * 100)


def money(cents_value: int) -> str:
    """Integer cents → "12.34"."""
    sign = "-" if cents_value < 0 else ""
    whole, part = divmod(abs(cents_value), 100)
    return f"{sign}{whole}.{part:02d}"


def product_to_api(record: ProductRecord) -> dict[str, Any]:
    """The JSON body of one product (built by hand: it is on the hot path of every read)."""
    return {
        "id": record.id,
        "sku": record.sku,
        "name": record.name,
        "description": record.description,
        "price": money(record.price_cents),
        "currency": record.currency,
        "category": record.category,
        "tags": list(record.tags),
        "stock": record.stock,
        "is_active": record.is_active,
        "version": record.version,
        "created_at": api_timestamp(record.created_at),
        "updated_at": api_timestamp(record.updated_at),
    }


def product_from_api(data: dict[str, Any]) -> ProductRecord:
    """Inverse of product_to_api (timestamps have millisecond precision, as MongoDB stores them)."""
    return ProductRecord(
        id=data["id"],
        sku=data["sku"],
        name=data["name"],
        description=data["description"],
        price_cents=cents(Decimal(data["price"])),
        currency=data["currency"],
        category=data["category"],
        tags=tuple(data["tags"]),
        stock=data["stock"],
        is_active=data["is_active"],
        version=data["version"],
        created_at=datetime.fromisoformat(data["created_at"].replace("Z", "+00:00")),
        updated_at=datetime.fromisoformat(data["updated_at"].replace("Z", "+00:00")),
    )


def api_timestamp(moment: datetime) -> str:
    """An aware UTC datetime as the API writes it: ISO 8601, milliseconds, "Z"."""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def values_from_input(data: dict[str, Any]) -> dict[str, Any]:
    """Validated request body → document field values."""
    values = dict(data)
    if "price" in values:
        values["price_cents"] = cents(values.pop("price"))
    if "tags" in values:
        # Order-preserving de-duplication: a tag listed twice means nothing more.
        values["tags"] = list(dict.fromkeys(values["tags"]))
    return values


def query_from_args(args: dict[str, Any]) -> ProductQuery:
    """Validated query string → ProductQuery (money in cents, text trimmed)."""
    return ProductQuery(
        category=args.get("category"),
        tag=args.get("tag"),
        min_price_cents=cents(args["min_price"]) if "min_price" in args else None,
        max_price_cents=cents(args["max_price"]) if "max_price" in args else None,
        in_stock=args.get("in_stock"),
        is_active=args.get("is_active"),
        q=args["q"].strip() or None if "q" in args else None,
        sort=args.get("sort", "-created_at"),
        page=args.get("page", 1),
        page_size=args.get("page_size", 20),
    )


def etag(version: int) -> str:
    """Strong ETag for a product version."""
    return f'"v{version}"'


def content_etag(body: bytes, total: int | None = None) -> str:
    """Strong ETag for an answer validated by its bytes (a list page with its total, a count, the categories)."""
    # SHA-256 (OpenSSL's, with the CPU's SHA instructions where present: 4x BLAKE2b's speed
    # on the benchmark machine), cut to 128 bits: a collision (a 304 for a changed answer)
    # is out of reach by chance, and the tag is 24 bytes. docs/api.md says why not generations.
    digest = hashlib.sha256(body)
    if total is not None:
        # A page's total is in X-Pagination and Link, not in its body. JSON text holds no NUL.
        digest.update(b"\0%d" % total)
    return '"' + base64.urlsafe_b64encode(digest.digest()[:16]).rstrip(b"=").decode() + '"'


# Exactly the tags etag() produces. str.isdigit() is not enough: it accepts "²",
# which int() refuses, and "v01" is a different entity tag from "v1".
_VERSION_TAG = re.compile(r"v([1-9][0-9]{0,17})")


def versions_from_etags(tags: list[str]) -> set[int]:
    """Versions named by If-Match/If-None-Match entity tags (others are ignored)."""
    return {int(match.group(1)) for tag in tags if (match := _VERSION_TAG.fullmatch(tag))}
