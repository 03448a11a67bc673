"""Product endpoints under /api/v1. Handlers parse, authorize and call the service."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from flask import Response, request, url_for
from flask.views import MethodView

from jollyjet.auth import require_token
from jollyjet.openapi_contract import errors
from jollyjet.products import body
from jollyjet.products.domain import CacheStatus, ProductRecord
from jollyjet.products.repository import VersionConflict
from jollyjet.products.representation import (
    etag,
    query_from_args,
    values_from_input,
    versions_from_etags,
)
from jollyjet.products.schemas import (
    CategorySchema,
    CountSchema,
    ProductFilterSchema,
    ProductInputSchema,
    ProductListQuerySchema,
    ProductPatchSchema,
    ProductSchema,
)
from jollyjet.products.service import ProductService
from jollyjet.request_parsing import ApiBlueprint
from jollyjet.services import current_services

_View = TypeVar("_View", bound=Callable[..., Any])
blp = ApiBlueprint("products", __name__, url_prefix="/api/v1", description="Product catalog")
WRITE_SECURITY: list[dict[str, list[str]]] = [{"bearerAuth": []}]
# Where a created product can be used next: the stateful contract tests follow these.
_PRODUCT_LINKS = {
    name: {"operationId": operation, "parameters": {"product_id": "$response.body#/id"}}
    for name, operation in (
        ("GetProduct", "getProduct"),
        ("ReplaceProduct", "replaceProduct"),
        ("UpdateProduct", "updateProduct"),
        ("DeleteProduct", "deleteProduct"),
    )
}
_ETAG = {"ETag": {"schema": {"type": "string"}, "required": True, "description": 'The version, e.g. "v3"'}}
_X_CACHE = {"X-Cache": {"schema": {"type": "string", "enum": ["HIT", "MISS", "BYPASS"]}, "required": True}}
_WRITE_WHY = {409: "Another product has this sku"}


def _service() -> ProductService:
    return current_services().products


_JSON = "application/json"


def _json(body: Any, status: int = 200, source: CacheStatus | None = None) -> Response:
    response = Response(orjson.dumps(body), status=status, mimetype="application/json")
    if source is not None:
        response.headers["X-Cache"] = source.value
    return response


def _product_response(record: ProductRecord, status: int = 200) -> Response:
    return Response(body.render(record), status=status, headers={"ETag": etag(record.version)}, mimetype=_JSON)


def _not_modified(version: int) -> bool:
    """If-None-Match names this version or is "*" (weak comparison, as RFC 9110 asks for GET)."""
    if_none_match = request.if_none_match
    if if_none_match.star_tag:
        return True
    return version in versions_from_etags(list(if_none_match.as_set(include_weak=True)))


# Versions start at 1: a write expecting version 0 always conflicts, and the conflict
# reports the current version (what a 412 for tags naming no version must carry).
_NO_VERSION = 0


def _conditional(write: Callable[[int | None], ProductRecord]) -> ProductRecord:
    """Run write(expected_version) under the request's If-Match, judged by MongoDB's atomic check."""
    # Not judged by reading the product first: that read may be served by a cache entry
    # a failed write-through left stale, and it would count as a client read. For a list
    # of tags, the newest is tried first, then the current version if the list names it.
    if not request.headers.get("If-Match") or request.if_match.star_tag:
        return write(None)
    versions = versions_from_etags(list(request.if_match.as_set()))  # strong tags only (RFC 9110)
    try:
        return write(max(versions, default=_NO_VERSION))
    except VersionConflict as conflict:
        if conflict.current_version not in versions:
            raise
        return write(conflict.current_version)  # still conditional: lands only at that version


def _update(product_id: str, data: dict[str, Any]) -> Response:
    """PUT and PATCH: the schemas differ (all fields, some fields), the update does not."""
    values = values_from_input(data)
    record = _conditional(lambda expected: _service().update(product_id, values, expected))
    return _product_response(record)


@blp.route("/products")
class Products(MethodView):
    @blp.arguments(ProductListQuerySchema, location="query", as_kwargs=False)
    @blp.response(
        200,
        ProductSchema(many=True),
        headers={"X-Pagination": {"schema": {"type": "string"}, "required": True}, **_X_CACHE},
    )
    @errors(blp, 400, 422, 429, 503)
    @blp.doc(operationId="listProducts")
    def get(self, args: dict[str, Any]) -> Response:
        """List products with filters, sorting and pagination."""
        query = query_from_args(args)
        read = _service().list_bodies(query)
        response = Response(body.json_array(read.value.bodies), mimetype=_JSON)
        response.headers["X-Cache"] = read.source.value
        response.headers["X-Pagination"] = json.dumps(_pagination(read.value.total, query.page, query.page_size))
        return response

    @require_token  # outermost: authenticate before parsing the body
    @blp.arguments(ProductInputSchema)
    @blp.response(201, ProductSchema, headers={**_ETAG, "Location": {"schema": {"type": "string"}, "required": True}})
    @errors(blp, 400, 401, 409, 413, 415, 422, 503, why=_WRITE_WHY)
    @blp.doc(security=WRITE_SECURITY, operationId="createProduct", responses={201: {"links": _PRODUCT_LINKS}})
    def post(self, data: dict[str, Any]) -> Response:
        """Create a product."""
        record = _service().create(values_from_input(data))
        response = _product_response(record, 201)
        response.headers["Location"] = url_for("products.Product", product_id=record.id)
        return response


@blp.route("/products/count")
class ProductCount(MethodView):
    @blp.arguments(ProductFilterSchema, location="query")
    @blp.response(200, CountSchema, headers=_X_CACHE)
    @errors(blp, 400, 422, 429, 503)
    @blp.doc(operationId="countProducts")
    def get(self, args: dict[str, Any]) -> Response:
        """Count products matching the filters."""
        read = _service().count(query_from_args(args))
        return _json({"count": read.value}, source=read.source)


def _documentation_of(*decorators: Callable[[Any], Any]) -> Callable[[_View], _View]:
    """Give a view the OpenAPI documentation of flask-smorest decorators without their per-call wrappers.

    blp.response wraps a view to dump its return value with the schema, and a MethodView
    adds its own dispatch; a view that returns a ready Response gains nothing from either
    but pays for both on every call. Only GET by id, the hot path, is registered this way.
    """

    def document(view: _View) -> _View:
        documented: Any = view
        for decorator in reversed(decorators):
            documented = decorator(documented)
        view._apidoc = documented._apidoc  # type: ignore[attr-defined]  # what flask-smorest reads
        return view

    return document


@blp.route("/products/<product_id:product_id>", methods=["GET"], endpoint="ProductRead")
@_documentation_of(
    blp.response(200, ProductSchema, headers={**_ETAG, **_X_CACHE}),
    blp.alt_response(304, description="Not modified (If-None-Match)", headers={**_ETAG, **_X_CACHE}),
    errors(blp, 404, 503),
    blp.doc(operationId="getProduct"),
)
def get_product(product_id: str) -> Response:
    """Get one product; ETag/If-None-Match supported."""
    # The hot path: the body is served as the cache stored it, never decoded or re-encoded.
    read = _service().get_body(product_id)
    version = read.value.version
    headers = {"ETag": etag(version), "X-Cache": read.source.value}
    if "HTTP_IF_NONE_MATCH" in request.environ and _not_modified(version):
        return Response(status=304, headers=headers)
    return Response(read.value.body, headers=headers, mimetype=_JSON)


@blp.route("/products/<product_id:product_id>", methods=["PUT", "PATCH", "DELETE"])
class Product(MethodView):
    @require_token  # outermost: authenticate before parsing the body
    @blp.arguments(ProductInputSchema)
    @blp.response(200, ProductSchema, headers=_ETAG)
    @errors(blp, 400, 401, 404, 409, 412, 413, 415, 422, 503, why=_WRITE_WHY)
    @blp.doc(security=WRITE_SECURITY, operationId="replaceProduct")
    def put(self, data: dict[str, Any], product_id: str) -> Response:
        """Replace a product's fields (If-Match makes it conditional)."""
        return _update(product_id, data)

    @require_token  # outermost: authenticate before parsing the body
    @blp.arguments(ProductPatchSchema(partial=True))
    @blp.response(200, ProductSchema, headers=_ETAG)
    @errors(blp, 400, 401, 404, 409, 412, 413, 415, 422, 503, why=_WRITE_WHY)
    @blp.doc(security=WRITE_SECURITY, operationId="updateProduct")
    def patch(self, data: dict[str, Any], product_id: str) -> Response:
        """Change some of a product's fields (If-Match makes it conditional)."""
        return _update(product_id, data)

    @require_token  # outermost: authenticate before parsing the body
    @blp.response(204)
    @errors(blp, 401, 404, 412, 503)
    @blp.doc(security=WRITE_SECURITY, operationId="deleteProduct")
    def delete(self, product_id: str) -> Response:
        """Delete a product."""
        _conditional(lambda expected: _service().delete(product_id, expected))
        return Response(status=204)


@blp.route("/categories")
class Categories(MethodView):
    @blp.response(200, CategorySchema(many=True), headers=_X_CACHE)
    @errors(blp, 503)
    @blp.doc(operationId="listCategories")
    def get(self) -> Response:
        """Categories with their product counts."""
        read = _service().categories()
        return _json([{"category": r.category, "count": r.count} for r in read.value], source=read.source)


def _pagination(total: int, page: int, page_size: int) -> dict[str, int]:
    """flask-smorest's X-Pagination header: page, previous and next only while page exists."""
    info = {"total": total, "total_pages": 0}
    if total:
        last = (total - 1) // page_size + 1
        info.update(total_pages=last, first_page=1, last_page=last)
        if page <= last:
            info["page"] = page
            if page > 1:
                info["previous_page"] = page - 1
            if page < last:
                info["next_page"] = page + 1
    return info
