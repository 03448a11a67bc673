"""Product use cases: what routes and tasks call. No HTTP, no Redis here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jollyjet.products.record import CategoryCount, ProductPage, ProductQuery, ProductRecord, Read
from jollyjet.products.repository import ProductNotFound, ProductRepository

Listener = Callable[[], None]


class ProductService:
    """Reads and writes products through a repository (cached or not: configuration decides)."""

    def __init__(
        self,
        repository: ProductRepository,
        categories_memo: Callable[[Callable[[], list[CategoryCount]]], Read[list[CategoryCount]]] | None = None,
        on_change: tuple[Listener, ...] = (),
    ) -> None:
        self.repository = repository
        self._categories_memo = categories_memo
        self._on_change = on_change

    def get(self, product_id: str) -> Read[ProductRecord]:
        """The product; raises ProductNotFound for unknown or malformed ids."""
        read = self.repository.get(product_id)
        if read.value is None:
            raise ProductNotFound(product_id)
        return Read(read.value, read.source)

    def list_page(self, query: ProductQuery) -> Read[ProductPage]:
        """One page of products matching the query."""
        return self.repository.list_page(query)

    def count(self, query: ProductQuery) -> Read[int]:
        """How many products match the query's filters."""
        return self.repository.count(query)

    def categories(self) -> Read[list[CategoryCount]]:
        """Categories with product counts (memoized when a memo is configured)."""
        if self._categories_memo is None:
            return self.repository.categories()
        return self._categories_memo(lambda: self.repository.categories().value)

    def create(self, values: dict[str, Any]) -> ProductRecord:
        """Create a product at version 1."""
        record = self.repository.create(values)
        self._changed()
        return record

    def update(self, product_id: str, values: dict[str, Any], expected_version: int | None) -> ProductRecord:
        """Change fields (PUT sends all, PATCH some); expected_version makes it conditional."""
        record = self.repository.update(product_id, values, expected_version)
        self._changed()
        return record

    def delete(self, product_id: str, expected_version: int | None) -> ProductRecord:
        """Delete a product; returns its last state."""
        record = self.repository.delete(product_id, expected_version)
        self._changed()
        return record

    def _changed(self) -> None:
        for listener in self._on_change:
            listener()
