"""ProductRepository on MongoDB through mongoengine: the source of truth."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from mongoengine.errors import NotUniqueError
from pymongo.errors import ConnectionFailure, ExecutionTimeout, ServerSelectionTimeoutError, WTimeoutError

from jollyjet.db import array_contains, set_to_server_time
from jollyjet.products import body
from jollyjet.products.body import PageOfBodies, ProductBody
from jollyjet.products.domain import (
    SORT_FIELDS,
    CategoryCount,
    ProductPage,
    ProductQuery,
    ProductRecord,
    Read,
    object_id,
)
from jollyjet.products.models import ProductDocument, utcnow_ms
from jollyjet.products.repository import DatabaseUnavailable, DuplicateSku, ProductNotFound, VersionConflict


@contextmanager
def translate_db_errors() -> Iterator[None]:
    """Turn driver-level outages into DatabaseUnavailable (served as 503)."""
    try:
        yield
    except (ConnectionFailure, ExecutionTimeout, WTimeoutError) as error:
        never_sent = isinstance(error, ServerSelectionTimeoutError)
        raise DatabaseUnavailable(type(error).__name__, never_sent=never_sent) from error


def _aware(value: datetime) -> datetime:
    # BSON dates hold milliseconds; mongomock's $currentDate keeps microseconds. Truncating
    # here (a no-op on MongoDB) keeps a record equal to its API body (products/body.py).
    moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def to_record(doc: ProductDocument) -> ProductRecord:
    """Document → plain record."""
    return ProductRecord(
        id=str(doc.id),
        sku=doc.sku,
        name=doc.name,
        description=doc.description or "",
        price_cents=doc.price_cents,
        currency=doc.currency,
        category=doc.category,
        tags=tuple(doc.tags or ()),
        stock=doc.stock,
        is_active=doc.is_active,
        version=doc.version,
        created_at=_aware(doc.created_at),
        updated_at=_aware(doc.updated_at),
    )


def build_filter(query: ProductQuery) -> dict[str, Any]:
    """MongoDB filter from validated values only; user text is escaped before it meets $regex."""
    spec: dict[str, Any] = {}
    if query.category is not None:
        spec["category"] = query.category
    if query.tag is not None:
        spec["tags"] = array_contains(query.tag)
    price: dict[str, int] = {}
    if query.min_price_cents is not None:
        price["$gte"] = query.min_price_cents
    if query.max_price_cents is not None:
        price["$lte"] = query.max_price_cents
    if price:
        spec["price_cents"] = price
    if query.in_stock is not None:
        spec["stock"] = {"$gt": 0} if query.in_stock else {"$lte": 0}
    if query.is_active is not None:
        spec["is_active"] = query.is_active
    if query.q:
        # String form of $regex (not a BSON regex object) with the text escaped:
        # a substring match, never a pattern supplied by the client.
        spec["name"] = {"$regex": re.escape(query.q), "$options": "i"}
    return spec


def _sort_keys(sort: str) -> list[str]:
    """The order_by keys of a public sort; _id breaks ties so pages are stable."""
    descending = sort.startswith("-")
    field = SORT_FIELDS[sort.lstrip("-")]
    sign = "-" if descending else "+"
    return [f"{sign}{field}", f"{sign}id"]


class MongoProductRepository:
    """Atomic version increments with findAndModify; unique sku by index (jollyjet/commands.py ensure_indexes)."""

    def get(self, product_id: str) -> Read[ProductRecord | None]:
        oid = object_id(product_id)
        if oid is None:
            return Read(None)
        with translate_db_errors():
            doc = ProductDocument.objects(id=oid).first()
        return Read(to_record(doc) if doc else None)

    def get_body(self, product_id: str) -> Read[ProductBody | None]:
        record = self.get(product_id).value
        return Read(None if record is None else body.of(record))

    def get_many(self, product_ids: list[str]) -> dict[str, ProductRecord]:
        oids = [oid for pid in product_ids if (oid := object_id(pid)) is not None]
        if not oids:
            return {}
        with translate_db_errors():
            docs = list(ProductDocument.objects(id__in=oids))
        return {str(d.id): to_record(d) for d in docs}

    def list_page(self, query: ProductQuery) -> Read[ProductPage]:
        spec = build_filter(query)
        skip = (query.page - 1) * query.page_size
        with translate_db_errors():
            matching = ProductDocument.objects(__raw__=spec)
            docs = list(matching.order_by(*_sort_keys(query.sort)).skip(skip).limit(query.page_size))
            if (docs and len(docs) < query.page_size) or (not docs and skip == 0):
                # The last (or only) page: its total follows from the same query, so the page
                # and its total are one state of the catalog, and one query instead of two.
                total = skip + len(docs)
            else:
                # A full page (more may follow) or past the end: a second query, which a write can
                # fall between (MongoDB has no snapshot across two reads outside a transaction).
                total = matching.count()
        return Read(ProductPage(items=[to_record(d) for d in docs], total=total))

    def list_bodies(self, query: ProductQuery) -> Read[PageOfBodies]:
        page = self.list_page(query).value
        return Read(body.page_of((page.items, page.total)))

    def count(self, query: ProductQuery) -> Read[int]:
        with translate_db_errors():
            return Read(ProductDocument.objects(__raw__=build_filter(query)).count())

    def categories(self) -> Read[list[CategoryCount]]:
        pipeline = [{"$group": {"_id": "$category", "count": {"$sum": 1}}}, {"$sort": {"_id": 1}}]
        with translate_db_errors():
            rows = list(ProductDocument.objects.aggregate(pipeline))
        return Read([CategoryCount(category=r["_id"], count=r["count"]) for r in rows])

    def create(self, values: dict[str, Any]) -> ProductRecord:
        now = utcnow_ms()
        doc = ProductDocument(**values, version=1, created_at=now, updated_at=now)
        with translate_db_errors():
            try:
                doc.save(force_insert=True)
            except NotUniqueError:
                raise DuplicateSku(values.get("sku")) from None
        return to_record(doc)

    def update(self, product_id: str, values: dict[str, Any], expected_version: int | None) -> ProductRecord:
        oid = object_id(product_id)
        if oid is None:
            raise ProductNotFound(product_id)
        selector: dict[str, Any] = {"id": oid}
        if expected_version is not None:
            selector["version"] = expected_version
        changes = {f"set__{name}": value for name, value in values.items()}
        with translate_db_errors():
            try:
                # updated_at from the server's clock; the record, and so the cache, is built
                # from the returned document.
                doc = ProductDocument.objects(**selector).modify(
                    new=True, inc__version=1, __raw__=set_to_server_time("updated_at"), **changes
                )
            except NotUniqueError:
                raise DuplicateSku(values.get("sku")) from None
            if doc is None:
                self._raise_missing_or_conflict(oid)
        return to_record(doc)

    def delete(self, product_id: str, expected_version: int | None) -> ProductRecord:
        oid = object_id(product_id)
        if oid is None:
            raise ProductNotFound(product_id)
        selector: dict[str, Any] = {"id": oid}
        if expected_version is not None:
            selector["version"] = expected_version
        with translate_db_errors():
            doc = ProductDocument.objects(**selector).modify(remove=True)
            if doc is None:
                self._raise_missing_or_conflict(oid)
        return to_record(doc)

    @staticmethod
    def _raise_missing_or_conflict(oid: ObjectId) -> None:
        current = ProductDocument.objects(id=oid).only("version").first()
        if current is None:
            raise ProductNotFound(str(oid))
        raise VersionConflict(current.version)
