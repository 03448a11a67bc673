"""The MongoDB bulkhead: at most N calls of a process wait on MongoDB at once; beyond, a request is shed.

Without it a flood of cache misses (unique searches, say) holds every request thread of a
process in MongoDB, and cached reads queue behind them. A call takes a slot, waiting at
most a short while for one; a call that gets none raises Overloaded (503 with
Retry-After, jollyjet/http.py) without sending anything to MongoDB. The slots wrap the
uncached repository, so only what really goes to MongoDB takes one: cache misses,
bypasses, fenced reads and writes. Cache hits never do.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from jollyjet.products.body import PageOfBodies, ProductBody
from jollyjet.products.domain import CategoryCount, ProductPage, ProductQuery, ProductRecord, Read
from jollyjet.products.repository import DatabaseUnavailable, ProductRepository


class Overloaded(DatabaseUnavailable):
    """Every bulkhead slot stayed taken for the whole wait; nothing was sent to MongoDB.

    A DatabaseUnavailable that was never sent: a shed write is a certain failure (the
    cached repository drops its marks instead of invalidating), and jobs retry it."""

    def __init__(self, size: int) -> None:
        super().__init__(f"{size} MongoDB calls already in flight in this process", never_sent=True)
        self.size = size


class Bulkhead:
    """A counting semaphore with a bounded wait; on_shed is told of each call it refuses."""

    def __init__(self, size: int, wait_ms: int, on_shed: Callable[[], None] | None = None) -> None:
        self.size = size
        self.wait_s = wait_ms / 1000
        self.on_shed = on_shed
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


class BoundedRepository:
    """A ProductRepository whose every call holds a bulkhead slot while the inner repository runs."""

    def __init__(self, inner: ProductRepository, bulkhead: Bulkhead) -> None:
        self.inner = inner
        self.bulkhead = bulkhead

    def get(self, product_id: str) -> Read[ProductRecord | None]:
        with self.bulkhead.slot():
            return self.inner.get(product_id)

    def get_body(self, product_id: str) -> Read[ProductBody | None]:
        with self.bulkhead.slot():
            return self.inner.get_body(product_id)

    def get_many(self, product_ids: list[str]) -> dict[str, ProductRecord]:
        with self.bulkhead.slot():
            return self.inner.get_many(product_ids)

    def list_page(self, query: ProductQuery) -> Read[ProductPage]:
        with self.bulkhead.slot():
            return self.inner.list_page(query)

    def list_bodies(self, query: ProductQuery) -> Read[PageOfBodies]:
        with self.bulkhead.slot():
            return self.inner.list_bodies(query)

    def count(self, query: ProductQuery) -> Read[int]:
        with self.bulkhead.slot():
            return self.inner.count(query)

    def categories(self) -> Read[list[CategoryCount]]:
        with self.bulkhead.slot():
            return self.inner.categories()

    def create(self, values: dict[str, Any]) -> ProductRecord:
        with self.bulkhead.slot():
            return self.inner.create(values)

    def update(self, product_id: str, values: dict[str, Any], expected_version: int | None) -> ProductRecord:
        with self.bulkhead.slot():
            return self.inner.update(product_id, values, expected_version)

    def delete(self, product_id: str, expected_version: int | None) -> ProductRecord:
        with self.bulkhead.slot():
            return self.inner.delete(product_id, expected_version)
