"""The repository interface views, commands and jobs call (services.products), and its errors."""

from __future__ import annotations

from typing import Any, Protocol

from jollyjet.products.body import PageOfBodies, ProductBody
from jollyjet.products.domain import CategoryCount, ProductPage, ProductQuery, ProductRecord, Read


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
    """MongoDB could not be reached or timed out.

    never_sent: no server was selected, so no command left this process (the write certainly
    did not happen); otherwise a write's outcome is unknown."""

    def __init__(self, reason: str, never_sent: bool = False) -> None:
        super().__init__(reason)
        self.never_sent = never_sent


class ProductRepository(Protocol):
    """Reads return Read[...] (value plus how it was served); writes return the committed state."""

    def get(self, product_id: str) -> Read[ProductRecord | None]:
        """The product, or None when it does not exist."""

    def get_body(self, product_id: str) -> Read[ProductBody | None]:
        """The product's API body (what GET by id serves), or None when it does not exist."""

    def get_many(self, product_ids: list[str]) -> dict[str, ProductRecord]:
        """The existing products among these ids, by id, in one query (never cached: jobs use it)."""

    def list_page(self, query: ProductQuery) -> Read[ProductPage]:
        """One page of products matching the query, with the total."""

    def list_bodies(self, query: ProductQuery) -> Read[PageOfBodies]:
        """list_page as the items' API bodies (what the list endpoint serves)."""

    def count(self, query: ProductQuery) -> Read[int]:
        """How many products match the query's filters."""

    def categories(self) -> Read[list[CategoryCount]]:
        """Every category with its product count, by name."""

    def create(self, values: dict[str, Any]) -> ProductRecord:
        """Insert a new product at version 1; raises DuplicateSku."""

    def update(self, product_id: str, values: dict[str, Any], expected_version: int | None) -> ProductRecord:
        """Set fields and increment version atomically; raises ProductNotFound, VersionConflict, DuplicateSku."""

    def delete(self, product_id: str, expected_version: int | None) -> ProductRecord:
        """Remove the product; returns its last state. Raises ProductNotFound, VersionConflict."""
