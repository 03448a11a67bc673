"""The product repository on MongoDB (mongoengine), the source of truth, behind the bulkhead; and its errors.

The bulkhead: at most N calls of a process wait on MongoDB at once, so a flood of cache misses cannot
hold every request thread while cached reads queue behind them. A call that gets no slot within a
short wait raises Overloaded (503 with Retry-After) without sending anything. Only what goes to
MongoDB takes a slot; the jobs' repository (services.mongo) has no bulkhead.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from bson import ObjectId
from mongoengine.errors import NotUniqueError
from pymongo.errors import ConnectionFailure, ExecutionTimeout, ServerSelectionTimeoutError, WTimeoutError

from jollyjet.db import array_contains, set_to_server_time
from jollyjet.products.record import (
    SORT_FIELDS,
    CategoryCount,
    PageOfBodies,
    ProductBody,
    ProductDocument,
    ProductPage,
    ProductQuery,
    ProductRecord,
    Read,
    body_of,
    object_id,
    page_of,
    to_record,
    utcnow_ms,
)


class ProductNotFound(LookupError):
    """No product with that id."""


class VersionConflict(Exception):
    """If-Match named a version that is no longer current."""

    def __init__(self, current_version: int) -> None:
        super().__init__(f"current version is {current_version}")
        self.current_version = current_version


class DuplicateSku(Exception):
    """Another product already has this sku."""


class DatabaseUnavailable(Exception):
    """MongoDB could not be reached or timed out; never_sent: no command left this process (a certain failure)."""

    def __init__(self, reason: str, never_sent: bool = False) -> None:
        super().__init__(reason)
        self.never_sent = never_sent


class Overloaded(DatabaseUnavailable):
    """Every bulkhead slot stayed taken for the whole wait: never sent, so a shed write is a certain failure."""

    def __init__(self, size: int) -> None:
        super().__init__(f"{size} MongoDB calls already in flight in this process", never_sent=True)
        self.size = size


class Bulkhead:
    """A counting semaphore with a bounded wait; on_shed is told of each call it refuses."""

    def __init__(self, size: int, wait_ms: int, on_shed: Callable[[], None] | None = None) -> None:
        self.size, self.wait_s, self.on_shed = size, wait_ms / 1000, on_shed
        self._slots = threading.BoundedSemaphore(size)

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one slot for the block; raises Overloaded when none frees up within the wait."""
        if not self._slots.acquire(timeout=self.wait_s):
            if self.on_shed is not None:
                self.on_shed()
            raise Overloaded(self.size)
        try:
            yield
        finally:
            self._slots.release()


@contextmanager
def translate_db_errors() -> Iterator[None]:
    """Turn driver-level outages into DatabaseUnavailable (served as 503)."""
    try:
        yield
    except (ConnectionFailure, ExecutionTimeout, WTimeoutError) as error:
        never_sent = isinstance(error, ServerSelectionTimeoutError)
        raise DatabaseUnavailable(type(error).__name__, never_sent=never_sent) from error


def build_filter(query: ProductQuery) -> dict[str, Any]:
    """MongoDB filter from validated values only; user text is escaped before it meets $regex."""
    spec: dict[str, Any] = {}
    if query.category is not None:
        spec["category"] = query.category
    if query.tag is not None:
        spec["tags"] = array_contains(query.tag)
    price = {op: v for op, v in (("$gte", query.min_price_cents), ("$lte", query.max_price_cents)) if v is not None}
    if price:
        spec["price_cents"] = price
    if query.in_stock is not None:
        spec["stock"] = {"$gt": 0} if query.in_stock else {"$lte": 0}
    if query.is_active is not None:
        spec["is_active"] = query.is_active
    if query.q:
        # $regex as an escaped string (not a BSON regex): a substring match, never the client's pattern.
        spec["name"] = {"$regex": re.escape(query.q), "$options": "i"}
    return spec


def _sort_keys(sort: str) -> list[str]:
    """The order_by keys of a public sort; _id breaks ties so pages are stable."""
    sign = "-" if sort.startswith("-") else "+"
    return [f"{sign}{SORT_FIELDS[sort.lstrip('-')]}", f"{sign}id"]


class MongoProductRepository:
    """Products on MongoDB: versions incremented atomically (findAndModify), a unique sku by index.

    Reads return Read[...] (BYPASS) like the catalog cache's, so views call either; writes the committed state."""

    def __init__(self, bulkhead: Bulkhead | None = None) -> None:
        self.bulkhead = bulkhead

    @contextmanager
    def _db(self) -> Iterator[None]:
        """One call to MongoDB: a bulkhead slot (when bounded) and driver errors as DatabaseUnavailable."""
        with self.bulkhead.slot() if self.bulkhead else nullcontext(), translate_db_errors():
            yield

    def get(self, product_id: str) -> Read[ProductRecord | None]:
        """The product, or None when it does not exist."""
        oid = object_id(product_id)
        if oid is None:
            return Read(None)
        with self._db():
            doc = ProductDocument.objects(id=oid).first()
        return Read(to_record(doc) if doc else None)

    def get_body(self, product_id: str) -> Read[ProductBody | None]:
        """The product's API body (what GET by id serves), or None when it does not exist."""
        record = self.get(product_id).value
        return Read(None if record is None else body_of(record))

    def get_many(self, product_ids: list[str]) -> dict[str, ProductRecord]:
        """The existing products among these ids, by id, in one query (never cached: jobs use it)."""
        oids = [oid for pid in product_ids if (oid := object_id(pid)) is not None]
        if not oids:
            return {}
        with self._db():
            docs = list(ProductDocument.objects(id__in=oids))
        return {str(d.id): to_record(d) for d in docs}

    def list_page(self, query: ProductQuery) -> Read[ProductPage]:
        """One page of products matching the query, with the total."""
        skip = (query.page - 1) * query.page_size
        with self._db():
            matching = ProductDocument.objects(__raw__=build_filter(query))
            docs = list(matching.order_by(*_sort_keys(query.sort)).skip(skip).limit(query.page_size))
            if (docs and len(docs) < query.page_size) or (not docs and skip == 0):
                # The last (or only) page: the total follows from the same query (one state, one query).
                total = skip + len(docs)
            else:
                # More may follow, or past the end: a second query, which a write can fall between
                # (MongoDB has no snapshot across two reads outside a transaction).
                total = matching.count()
        return Read(ProductPage(items=[to_record(d) for d in docs], total=total))

    def list_bodies(self, query: ProductQuery) -> Read[PageOfBodies]:
        """list_page as the items' API bodies (what the list endpoint serves)."""
        return Read(page_of(self.list_page(query).value))

    def count(self, query: ProductQuery) -> Read[int]:
        """How many products match the query's filters."""
        with self._db():
            return Read(ProductDocument.objects(__raw__=build_filter(query)).count())

    def categories(self) -> Read[list[CategoryCount]]:
        """Every category with its product count, by name."""
        pipeline = [{"$group": {"_id": "$category", "count": {"$sum": 1}}}, {"$sort": {"_id": 1}}]
        with self._db():
            rows = list(ProductDocument.objects.aggregate(pipeline))
        return Read([CategoryCount(category=r["_id"], count=r["count"]) for r in rows])

    def create(self, values: dict[str, Any]) -> ProductRecord:
        """Insert a new product at version 1; raises DuplicateSku."""
        now = utcnow_ms()
        doc = ProductDocument(**values, version=1, created_at=now, updated_at=now)
        with self._db():
            try:
                doc.save(force_insert=True)
            except NotUniqueError:
                raise DuplicateSku(values.get("sku")) from None
        return to_record(doc)

    def update(self, product_id: str, values: dict[str, Any], expected_version: int | None) -> ProductRecord:
        """Set fields and increment version atomically; raises ProductNotFound, VersionConflict, DuplicateSku."""
        selector = _selector(product_id, expected_version)
        changes = {f"set__{name}": value for name, value in values.items()}
        with self._db():
            try:
                # updated_at from the server's clock; the record (and so the cache) from the returned document.
                doc = ProductDocument.objects(**selector).modify(
                    new=True, inc__version=1, __raw__=set_to_server_time("updated_at"), **changes
                )
            except NotUniqueError:
                raise DuplicateSku(values.get("sku")) from None
            return _found(doc, selector["id"])

    def delete(self, product_id: str, expected_version: int | None) -> ProductRecord:
        """Remove the product; returns its last state. Raises ProductNotFound, VersionConflict."""
        selector = _selector(product_id, expected_version)
        with self._db():
            return _found(ProductDocument.objects(**selector).modify(remove=True), selector["id"])


def _selector(product_id: str, expected_version: int | None) -> dict[str, Any]:
    """The filter a versioned write matches; ProductNotFound for a malformed id."""
    oid = object_id(product_id)
    if oid is None:
        raise ProductNotFound(product_id)
    return {"id": oid} if expected_version is None else {"id": oid, "version": expected_version}


def _found(doc: ProductDocument | None, oid: ObjectId) -> ProductRecord:
    """A versioned write's document as a record; ProductNotFound or VersionConflict when it matched none."""
    if doc is not None:
        return to_record(doc)
    current = ProductDocument.objects(id=oid).only("version").first()
    if current is None:
        raise ProductNotFound(str(oid))
    raise VersionConflict(current.version)
