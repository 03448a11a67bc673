"""One product: the MongoDB document, the plain record every layer passes around, and its one body codec.

The body (render/parse) is what GET /api/v1/products/<id> returns and what a cache entry stores
(keys.SCHEMA_VERSION names its shape: changing product_to_api must bump it), so a hit sends the
stored bytes as they are. Money is integer cents, never a float. Ids are canonical 24-hex ObjectIds;
every layer checks one with object_id() before building a key or a query.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Generic, TypeVar

import orjson
from bson import ObjectId
from mongoengine import BooleanField, DateTimeField, Document, IntField, ListField, StringField

T = TypeVar("T")
# Public sort names → the record's (and the document's) fields.
SORT_FIELDS = {
    "price": "price_cents",
    "name": "name",
    "created_at": "created_at",
    "updated_at": "updated_at",
    "stock": "stock",
}
_PRODUCT_ID = re.compile(r"[0-9a-f]{24}")


def utcnow_ms() -> datetime:
    """Now in UTC, truncated to milliseconds: what MongoDB stores, so cache and DB compare equal."""
    return _aware(datetime.now(UTC))


class ProductDocument(Document):
    """A product. `version` is incremented by every committed update."""

    meta = {
        "collection": "products",
        # Created by `flask --app app ensure-indexes` (the release phase), never while serving:
        # a Mongo outage at a first query must be a 503, not a crash.
        "auto_create_index": False,
        "indexes": [
            {"fields": ["sku"], "unique": True},
            {"fields": ["category", "price_cents"]},
            {"fields": ["tags"]},
            {"fields": ["-created_at"]},
            {"fields": ["price_cents"]},
        ],
    }
    sku = StringField(required=True)
    name = StringField(required=True)
    description = StringField(default="")
    price_cents = IntField(required=True, min_value=0)
    currency = StringField(required=True)
    category = StringField(required=True)
    tags = ListField(StringField())
    stock = IntField(required=True, min_value=0)
    is_active = BooleanField(required=True)
    version = IntField(required=True, min_value=1)
    created_at = DateTimeField(required=True)
    updated_at = DateTimeField(required=True)


def is_product_id(product_id: str) -> bool:
    """True for a canonical 24-hex id (what a check needs: no ObjectId built)."""
    return _PRODUCT_ID.fullmatch(product_id) is not None


def object_id(product_id: str) -> ObjectId | None:
    """The ObjectId for a canonical 24-hex id, or None for anything else."""
    return ObjectId(product_id) if is_product_id(product_id) else None


class CacheStatus(StrEnum):
    """How a read was served: from the cache, filled after a miss, or without the cache."""

    HIT = "HIT"
    MISS = "MISS"
    BYPASS = "BYPASS"


@dataclass(frozen=True)
class ProductRecord:
    """One product as stored. price_cents is exact integer money."""

    id: str
    sku: str
    name: str
    description: str
    price_cents: int
    currency: str
    category: str
    tags: tuple[str, ...]
    stock: int
    is_active: bool
    version: int
    created_at: datetime
    updated_at: datetime


def _aware(value: datetime) -> datetime:
    # BSON dates hold milliseconds; mongomock's $currentDate keeps microseconds: truncated, a record equals its body.
    moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


# The fields a document, a record and a body hold alike (the others are converted on the way).
_SAME_FIELDS = ("sku", "name", "currency", "category", "stock", "is_active", "version")


def to_record(doc: ProductDocument) -> ProductRecord:
    """Document → plain record."""
    return ProductRecord(
        id=str(doc.id),
        description=doc.description or "",
        price_cents=doc.price_cents,
        tags=tuple(doc.tags or ()),
        created_at=_aware(doc.created_at),
        updated_at=_aware(doc.updated_at),
        **{name: getattr(doc, name) for name in _SAME_FIELDS},
    )


@dataclass(frozen=True)
class ProductQuery:
    """Validated list/count filters, sort and page. Every field is already normalized."""

    category: str | None = None
    tag: str | None = None
    min_price_cents: int | None = None
    max_price_cents: int | None = None
    in_stock: bool | None = None
    is_active: bool | None = None
    q: str | None = None
    sort: str = "-created_at"
    page: int = 1
    page_size: int = 20

    def filters(self) -> dict[str, Any]:
        """Only the filter part (what a count depends on), without None values."""
        return {k: v for k, v in vars(self).items() if v is not None and k not in ("sort", "page", "page_size")}

    def normalized(self) -> dict[str, Any]:
        """Filters plus sort and page: what a list result depends on (used for cache keys)."""
        return {**self.filters(), "sort": self.sort, "page": self.page, "page_size": self.page_size}


# What a cached result depends on (which write changes which: catalog_writes.changed_aspects).
MEMBERS = "members"
# The category list groups by this field: a product that stays in a set but changes category moves a count.
GROUP_CATEGORY = "group.category"


def order_aspect(sort: str) -> str:
    """The aspect a page sorted by `sort` (e.g. "-price") depends on besides its members."""
    return f"order.{SORT_FIELDS[sort.lstrip('-')]}"


def aspects(kind: str, query: ProductQuery) -> list[str]:
    """The aspects a cached count, list page or category list depends on."""
    if kind == "count":
        return [MEMBERS]
    return [MEMBERS, GROUP_CATEGORY if kind == "categories" else order_aspect(query.sort)]


def filters_member(filters: dict[str, Any]) -> str:
    """The registry member naming a filter set (canonical JSON)."""
    return orjson.dumps(filters, option=orjson.OPT_SORT_KEYS).decode()


@dataclass(frozen=True)
class ProductPage:
    """One page of a product list and the total matching the filters."""

    items: list[ProductRecord]
    total: int


@dataclass(frozen=True)
class Read(Generic[T]):
    """A read result and how it was served."""

    value: T
    source: CacheStatus = CacheStatus.BYPASS


@dataclass(frozen=True)
class CategoryCount:
    """A category and how many products it holds."""

    category: str
    count: int


# --- the body codec ------------------------------------------------------------------


def cents(amount: Decimal) -> int:
    """Exact decimal (≤ 2 places, validated) → integer cents."""
    return int(amount * 100)


def money(cents_value: int) -> str:
    """Integer cents → "12.34"."""
    whole, part = divmod(abs(cents_value), 100)
    return f"{'-' if cents_value < 0 else ''}{whole}.{part:02d}"


def api_timestamp(moment: datetime) -> str:
    """An aware UTC datetime as the API writes it: ISO 8601, milliseconds, "Z"."""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def product_to_api(record: ProductRecord) -> dict[str, Any]:
    """The JSON body of one product as data (built by hand: it is on the hot path of every read)."""
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


def render(record: ProductRecord) -> bytes:
    """The API body of one product (the bytes a cache entry stores)."""
    return orjson.dumps(product_to_api(record))


# What a corrupt or foreign entry can raise while decoding (such an entry is a miss);
# ArithmeticError: decimal.InvalidOperation from a price that is not a number.
DECODE_ERRORS = (KeyError, TypeError, ValueError, AttributeError, ArithmeticError)


def parse(body: bytes) -> ProductRecord:
    """The record inside a body (timestamps to the millisecond); raises one of DECODE_ERRORS for other bytes."""
    data = orjson.loads(body)  # orjson.JSONDecodeError is a ValueError
    if not isinstance(data, dict):
        raise TypeError("a product body is a JSON object")
    return ProductRecord(
        id=data["id"],
        description=data["description"],
        price_cents=cents(Decimal(data["price"])),
        tags=tuple(data["tags"]),
        created_at=datetime.fromisoformat(data["created_at"].replace("Z", "+00:00")),
        updated_at=datetime.fromisoformat(data["updated_at"].replace("Z", "+00:00")),
        **{name: data[name] for name in _SAME_FIELDS},
    )


def names(product_id: str, body: bytes) -> bool:
    """Cheap identity check before serving stored bytes unparsed: a body of this product, not garbage."""
    return body.startswith(b'{"id":"' + product_id.encode() + b'",')


def json_array(bodies: Iterable[bytes]) -> bytes:
    """Bodies joined into one JSON array (byte for byte what serializing the list would give)."""
    return b"[" + b",".join(bodies) + b"]"


@dataclass(frozen=True, slots=True)
class ProductBody:
    """One product's API body, the version its ETag names, and the record when read from MongoDB (a fill dates it)."""

    version: int
    body: bytes
    record: ProductRecord | None = None


def body_of(record: ProductRecord) -> ProductBody:
    """A record as a served body."""
    return ProductBody(record.version, render(record), record)


@dataclass(frozen=True, slots=True)
class PageOfBodies:
    """One list page as its items' API bodies (in order) and the total matching its filters."""

    ids: list[str]
    bodies: list[bytes]
    total: int
    versions: list[int] | None = None  # each item's version as read (stored with the ids)
    moved_on: bool = False  # from the cache, with items newer than the stored page (catalog._page_from_ids)


def page_of(page: ProductPage) -> PageOfBodies:
    """A page of records (and its total) as bodies."""
    ids, bodies, versions = [r.id for r in page.items], [render(r) for r in page.items], [r.version for r in page.items]
    return PageOfBodies(ids, bodies, page.total, versions)
