"""Product use cases: what routes and tasks call. No HTTP, no Redis here."""

from __future__ import annotations

from typing import Any

from jollyjet.products.body import PageOfBodies, ProductBody
from jollyjet.products.domain import CategoryCount, ProductPage, ProductQuery, ProductRecord, Read
from jollyjet.products.repository import ProductNotFound, ProductRepository


class ProductService:
    """Reads and writes products through a repository (cached or not: configuration decides)."""

    def __init__(self, repository: ProductRepository) -> None:
        self.repository = repository

    def get(self, product_id: str) -> Read[ProductRecord]:
        """The product; raises ProductNotFound for unknown or malformed ids."""
        read = self.repository.get(product_id)
        if read.value is None:
            raise ProductNotFound(product_id)
        return Read(read.value, read.source)

    def get_body(self, product_id: str) -> Read[ProductBody]:
        """The product's API body (served as is); raises ProductNotFound for unknown or malformed ids."""
        read = self.repository.get_body(product_id)
        if read.value is None:
            raise ProductNotFound(product_id)
        return Read(read.value, read.source)

    def list_page(self, query: ProductQuery) -> Read[ProductPage]:
        """One page of products matching the query."""
        return self.repository.list_page(query)

    def list_bodies(self, query: ProductQuery) -> Read[PageOfBodies]:
        """One page as its items' API bodies (served as they are) and the total."""
        return self.repository.list_bodies(query)

    def count(self, query: ProductQuery) -> Read[int]:
        """How many products match the query's filters."""
        return self.repository.count(query)

    def categories(self) -> Read[list[CategoryCount]]:
        """Categories with product counts."""
        return self.repository.categories()

    def create(self, values: dict[str, Any]) -> ProductRecord:
        """Create a product at version 1."""
        return self.repository.create(values)

    def update(self, product_id: str, values: dict[str, Any], expected_version: int | None) -> ProductRecord:
        """Change fields (PUT sends all, PATCH some); expected_version makes it conditional."""
        return self.repository.update(product_id, values, expected_version)

    def delete(self, product_id: str, expected_version: int | None) -> ProductRecord:
        """Delete a product; returns its last state."""
        return self.repository.delete(product_id, expected_version)
