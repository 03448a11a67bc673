"""Domain errors → JSON HTTP errors. Nothing here leaks a stack trace."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify

from jollyjet.products.repository import DatabaseUnavailable, DuplicateSku, ProductNotFound, VersionConflict

log = logging.getLogger(__name__)


def error_response(code: int, status: str, message: str) -> Response:
    """The same JSON shape flask-smorest uses for its own errors."""
    response = jsonify({"code": code, "status": status, "message": message})
    response.status_code = code
    return response


def register_error_handlers(app: Flask) -> None:
    """Map domain exceptions to status codes."""

    @app.errorhandler(ProductNotFound)
    def _not_found(_: ProductNotFound) -> Response:
        return error_response(404, "Not Found", "product not found")

    @app.errorhandler(VersionConflict)
    def _conflict(error: VersionConflict) -> Response:
        response = error_response(
            412, "Precondition Failed", f"If-Match does not match the current version {error.current_version}"
        )
        response.headers["ETag"] = f'"v{error.current_version}"'
        return response

    @app.errorhandler(DuplicateSku)
    def _duplicate(_: DuplicateSku) -> Response:
        return error_response(409, "Conflict", "a product with this sku already exists")

    @app.errorhandler(DatabaseUnavailable)
    def _database_down(error: DatabaseUnavailable) -> Response:
        log.error("database unavailable: %s", error)
        response = error_response(503, "Service Unavailable", "the product database is unavailable; retry shortly")
        response.headers["Retry-After"] = "5"
        return response
