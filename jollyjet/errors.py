"""Errors → JSON HTTP errors ({"code", "status", "message", ...}). Nothing here leaks a stack trace."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from flask import Flask, Response, jsonify, request
from flask_smorest import Api
from werkzeug.exceptions import HTTPException, MethodNotAllowed, RequestEntityTooLarge

from jollyjet.products.repository import DatabaseUnavailable, DuplicateSku, Overloaded, ProductNotFound, VersionConflict
from jollyjet.products.views import etag

log = logging.getLogger(__name__)
_LISTED_PROBLEMS = 5
_MAX_MESSAGE_CHARS = 500


def error_response(code: int, status: str, message: str) -> Response:
    """The same JSON shape flask-smorest uses for its own errors."""
    response = jsonify({"code": code, "status": status, "message": message})
    response.status_code = code
    return response


def _problems(errors: Any, path: str = "") -> Iterator[str]:
    """marshmallow's nested error dict as "location.field: message" lines."""
    if isinstance(errors, dict):
        for key, value in errors.items():
            # "_schema" is marshmallow's name for an error about the whole object.
            name = path if key == "_schema" else f"{path}.{key}" if path else str(key)
            yield from _problems(value, name)
    elif isinstance(errors, list | tuple):
        for item in errors:
            yield from _problems(item, path)
    else:
        yield f"{path}: {errors}" if path else str(errors)


def describe_errors(errors: Any) -> str:
    """One readable line naming the first few problems of a validation error."""
    problems = list(_problems(errors))
    text = "; ".join(problems[:_LISTED_PROBLEMS])
    if len(problems) > _LISTED_PROBLEMS:
        text += f"; and {len(problems) - _LISTED_PROBLEMS} more"
    # Unknown field names are echoed back: keep a hostile body from inflating the message.
    return text if len(text) <= _MAX_MESSAGE_CHARS else text[: _MAX_MESSAGE_CHARS - 3] + "..."


class JsonErrorApi(Api):
    """flask-smorest's Api whose error bodies always carry a message."""

    # flask-smorest adds "message" only when abort() was given one: validation (422)
    # and routing (404, 405) errors would reach clients without one.

    def handle_http_exception(self, error: HTTPException) -> tuple[dict[str, Any], int, dict[str, str]]:
        """flask-smorest's payload, plus a message from the validation errors or the HTTP description."""
        payload, code, headers = super().handle_http_exception(error)
        if isinstance(error, MethodNotAllowed) and error.valid_methods:
            # RFC 9110 requires Allow on a 405; flask-smorest keeps only headers given to abort().
            headers = {**headers, "Allow": ", ".join(error.valid_methods)}
        if "message" not in payload:
            payload["message"] = describe_errors(payload["errors"]) if "errors" in payload else error.description
        return payload, code, headers


def register_error_handlers(app: Flask) -> None:
    """Map domain exceptions to status codes, and anything unexpected to a bare 500."""

    @app.errorhandler(ProductNotFound)
    def _not_found(_: ProductNotFound) -> Response:
        return error_response(404, "Not Found", "product not found")

    @app.errorhandler(VersionConflict)
    def _conflict(error: VersionConflict) -> Response:
        response = error_response(
            412, "Precondition Failed", f"If-Match does not match the current version {error.current_version}"
        )
        response.headers["ETag"] = etag(error.current_version)
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

    # Flask picks the handler of the most specific class: this one, not _database_down's.
    @app.errorhandler(Overloaded)
    def _overloaded(error: Overloaded) -> Response:
        response = error_response(
            503,
            "Service Unavailable",
            f"overloaded: {error.size} requests of this process are already waiting on the product database; "
            "retry shortly",
        )
        # A second: the bulkhead frees as soon as MongoDB answers the calls in flight.
        response.headers["Retry-After"] = "1"
        return response

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(_: RequestEntityTooLarge) -> Response:
        limit = app.config["MAX_CONTENT_LENGTH"]
        response = error_response(413, "Request Entity Too Large", f"the request body is larger than {limit} bytes")
        # The unread rest of the body is still on the connection: it cannot carry another
        # request. Servers that honour the app's Connection header (Werkzeug's) close it;
        # gunicorn drops hop-by-hop headers, and gunicorn.conf.py closes it there.
        response.headers["Connection"] = "close"
        return response

    # Other HTTPExceptions never get here: Flask picks the most specific handler, and
    # JsonErrorApi registers one for HTTPException. Registering this also stops
    # TESTING mode from re-raising, so tests see exactly what a client would.
    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        log.error("unexpected error serving %s %s", request.method, request.path, exc_info=error)
        return error_response(500, "Internal Server Error", "internal error; it has been logged")
