"""Product endpoints under /api/v1: handlers parse, authorize and call the catalog (services.products).

Responses are built by hand: reads send the bytes the cache hands back (a body, a page's item bodies)
as they are, counts and categories share their conditional GET (a content ETag), and writes answer
with the body the cache stores (record.render). The schemas (blp.response) document every answer.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode

import orjson
from flask import Response, current_app, request, url_for
from flask.views import MethodView

from jollyjet.api import CACHE_CONTROL_KEY, MAX_PAGE_KEY, ApiBlueprint, errors, require_token
from jollyjet.extensions import current_services
from jollyjet.http import PREFIX, ROUTE, etag, not_modified, read_made_before
from jollyjet.products.record import CacheStatus, ProductQuery, ProductRecord, cents, json_array, render
from jollyjet.products.repository import ProductNotFound, VersionConflict
from jollyjet.products.schemas import (
    CategorySchema,
    CountSchema,
    ProductFilterSchema,
    ProductInputSchema,
    ProductListQuerySchema,
    ProductPatchSchema,
    ProductSchema,
)

if TYPE_CHECKING:
    from jollyjet.products.catalog import Catalog


def values_from_input(data: dict[str, Any]) -> dict[str, Any]:
    """Validated request body → document field values."""
    values = dict(data)
    if "price" in values:
        values["price_cents"] = cents(values.pop("price"))
    if "tags" in values:
        values["tags"] = list(dict.fromkeys(values["tags"]))  # a tag listed twice means nothing more
    return values


def query_from_args(args: dict[str, Any]) -> ProductQuery:
    """Validated query string → ProductQuery (money in cents, text trimmed)."""
    kept = ("category", "tag", "in_stock", "is_active", "sort", "page", "page_size")
    prices: dict[str, Any] = {f"{name}_cents": cents(args[name]) for name in ("min_price", "max_price") if name in args}
    q = args["q"].strip() or None if "q" in args else None
    return ProductQuery(**{name: args[name] for name in kept if name in args}, **prices, q=q)


def content_etag(body: bytes, total: int | None = None) -> str:
    """Strong ETag for an answer validated by its bytes (a list page with its total, a count, the categories)."""
    # SHA-256 (with the CPU's SHA instructions: 4x BLAKE2b here) cut to 128 bits: no collision by chance,
    # a 24-byte tag. docs/api.md says why not generations.
    digest = hashlib.sha256(body)
    if total is not None:  # a page's total is in X-Pagination and Link, not its body (JSON holds no NUL)
        digest.update(b"\0%d" % total)
    return '"' + base64.urlsafe_b64encode(digest.digest()[:16]).rstrip(b"=").decode() + '"'


# Exactly the tags etag() produces (str.isdigit() takes "²", and "v01" is another tag than "v1").
_VERSION_TAG = re.compile(r"v([1-9][0-9]{0,17})")


_View = TypeVar("_View", bound=Callable[..., Any])
blp = ApiBlueprint("products", __name__, url_prefix=PREFIX, description="Product catalog")
WRITE_SECURITY: list[dict[str, list[str]]] = [{"bearerAuth": []}]
# Where a created product can be used next: the stateful contract tests follow these.
_PRODUCT_LINKS = {
    f"{verb}Product": {"operationId": f"{verb.lower()}Product", "parameters": {"product_id": "$response.body#/id"}}
    for verb in ("Get", "Replace", "Update", "Delete")
}
_ETAG = {"ETag": {"schema": {"type": "string"}, "required": True, "description": 'The version, e.g. "v3"'}}
_X_CACHE = {"X-Cache": {"schema": {"type": "string", "enum": ["HIT", "MISS", "BYPASS"]}, "required": True}}
_CACHE_CONTROL = '"public, no-cache" (store, but revalidate every use) unless the operator set a max-age'
# Headers of every public read, on its 200 and on its 304 alike.
_READ = {**_X_CACHE, "Cache-Control": {"schema": {"type": "string"}, "required": True, "description": _CACHE_CONTROL}}
_CONTENT_ETAG = {"ETag": {"schema": {"type": "string"}, "required": True, "description": "A strong hash of the answer"}}
_PAGE = {
    **_READ,
    **_CONTENT_ETAG,
    "X-Pagination": {"schema": {"type": "string"}, "required": True},
    "Link": {"schema": {"type": "string"}, "required": False, "description": "RFC 8288: first, prev, next, last"},
}
_NOT_MODIFIED = "Not modified (If-None-Match names the current ETag, or is *)"
_WRITE_WHY = {409: "Another product has this sku"}


def _products() -> Catalog:
    return current_services().products


def _product_response(record: ProductRecord, status: int = 200, **headers: str) -> Response:
    headers = {"ETag": etag(record.version), **headers}
    return Response(render(record), status=status, headers=headers, mimetype="application/json")


def _read_response(content: bytes, tag: str, source: CacheStatus, **headers: str) -> Response:
    """A public read: 304 without a body when If-None-Match names the tag of what it read (or is "*"), else 200."""
    headers = {"ETag": tag, "X-Cache": source.value, "Cache-Control": current_app.config[CACHE_CONTROL_KEY], **headers}
    if not_modified(request.environ, tag):
        return Response(status=304, headers=headers)
    return Response(content, headers=headers, mimetype="application/json")


# Versions start at 1: expecting 0 always conflicts, reporting the current version (a 412 for tags naming none).
_NO_VERSION = 0


def _conditional(write: Callable[[int | None], ProductRecord]) -> ProductRecord:
    """Run write(expected_version) under the request's If-Match, judged by MongoDB's atomic check."""
    # Not by reading the product first: a stale entry of a failed write-through could answer, and it
    # would count as a client read. Of a list of tags the newest is tried, then the current if named.
    if not request.headers.get("If-Match") or request.if_match.star_tag:
        return write(None)
    # Strong tags only (RFC 9110); tags naming no version are ignored.
    versions = {int(match.group(1)) for tag in request.if_match.as_set() if (match := _VERSION_TAG.fullmatch(tag))}
    try:
        return write(max(versions, default=_NO_VERSION))
    except VersionConflict as conflict:
        if conflict.current_version not in versions:
            raise
        return write(conflict.current_version)  # still conditional: lands only at that version


def _update(product_id: str, data: dict[str, Any]) -> Response:
    """PUT and PATCH: the schemas differ (all fields, some fields), the update does not."""
    values = values_from_input(data)
    record = _conditional(lambda expected: _products().update(product_id, values, expected))
    return _product_response(record)


@blp.route("/products")
class Products(MethodView):
    @blp.arguments(ProductListQuerySchema, location="query", as_kwargs=False)
    @blp.response(200, ProductSchema(many=True), headers=_PAGE)
    @blp.alt_response(304, description=_NOT_MODIFIED, headers=_PAGE)
    @errors(blp, 400, 422, 429, 503)
    @blp.doc(operationId="listProducts")
    def get(self, args: dict[str, Any]) -> Response:
        """List products with filters, sorting and pagination.

        Conditional: `If-None-Match` with the page's `ETag` answers `304`."""
        query = query_from_args(args)
        read = _products().list_bodies(query)
        pagination = _pagination(read.value.total, query.page, query.page_size)
        headers = {"X-Pagination": json.dumps(pagination)}
        if links := _links(args, pagination):
            headers["Link"] = links
        content = json_array(read.value.bodies)
        return _read_response(content, content_etag(content, read.value.total), read.source, **headers)

    @require_token  # outermost: authenticate before parsing the body
    @blp.arguments(ProductInputSchema)
    @blp.response(201, ProductSchema, headers={**_ETAG, "Location": {"schema": {"type": "string"}, "required": True}})
    @errors(blp, 400, 401, 409, 413, 415, 422, 503, why=_WRITE_WHY)
    @blp.doc(security=WRITE_SECURITY, operationId="createProduct", responses={201: {"links": _PRODUCT_LINKS}})
    def post(self, data: dict[str, Any]) -> Response:
        """Create a product."""
        record = _products().create(values_from_input(data))
        return _product_response(record, 201, Location=url_for("products.Product", product_id=record.id))


@blp.route("/products/count")
class ProductCount(MethodView):
    @blp.arguments(ProductFilterSchema, location="query")
    @blp.response(200, CountSchema, headers={**_READ, **_CONTENT_ETAG})
    @blp.alt_response(304, description=_NOT_MODIFIED, headers={**_READ, **_CONTENT_ETAG})
    @errors(blp, 400, 422, 429, 503)
    @blp.doc(operationId="countProducts")
    def get(self, args: dict[str, Any]) -> Response:
        """Count products matching the filters.

        Conditional: `If-None-Match` with the count's `ETag` answers `304`."""
        read = _products().count(query_from_args(args))
        content = orjson.dumps({"count": read.value})
        return _read_response(content, content_etag(content), read.source)


def _documentation_of(*decorators: Callable[[Any], Any]) -> Callable[[_View], _View]:
    """Give a view the OpenAPI documentation of flask-smorest decorators without their per-call wrappers.

    A view returning a ready Response gains nothing from blp.response's dump or MethodView's dispatch
    but pays for both on every call: only GET by id, the hot path, is registered this way."""

    def document(view: _View) -> _View:
        documented: Any = view
        for decorator in reversed(decorators):
            documented = decorator(documented)
        view._apidoc = documented._apidoc  # type: ignore[attr-defined]  # what flask-smorest reads
        return view

    return document


@blp.route(ROUTE, methods=["GET"], endpoint="ProductRead")
@_documentation_of(
    blp.response(200, ProductSchema, headers={**_ETAG, **_READ}),
    blp.alt_response(304, description=_NOT_MODIFIED, headers={**_ETAG, **_READ}),
    errors(blp, 404, 503),
    blp.doc(operationId="getProduct"),
)
def get_product(product_id: str) -> Response:
    """Get one product; ETag/If-None-Match supported."""
    # A found product was answered by ProductHits before Flask; what comes here is the rest
    # (an unknown id, an error, a HEAD, a CORS request), read there already or not at all.
    read = read_made_before(request.environ) or _products().get_body(product_id)
    if read.value is None:
        raise ProductNotFound(product_id)
    return _read_response(read.value.body, etag(read.value.version), read.source)


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
        _conditional(lambda expected: _products().delete(product_id, expected))
        return Response(status=204)


@blp.route("/categories")
class Categories(MethodView):
    @blp.response(200, CategorySchema(many=True), headers={**_READ, **_CONTENT_ETAG})
    @blp.alt_response(304, description=_NOT_MODIFIED, headers={**_READ, **_CONTENT_ETAG})
    @errors(blp, 503)
    @blp.doc(operationId="listCategories")
    def get(self) -> Response:
        """Categories with their product counts.

        Conditional: `If-None-Match` with the list's `ETag` answers `304`."""
        read = _products().categories()
        content = orjson.dumps([{"category": r.category, "count": r.count} for r in read.value])
        return _read_response(content, content_etag(content), read.source)


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


# RFC 8288 relation → the X-Pagination field naming its page.
_LINK_RELATIONS = (("first", "first_page"), ("prev", "previous_page"), ("next", "next_page"), ("last", "last_page"))


def _links(args: dict[str, Any], pagination: dict[str, int]) -> str | None:
    """RFC 8288 Link header: the pages X-Pagination names that the API serves, keeping the request's filters.

    From the validated arguments re-encoded (quote_plus escapes all but letters, digits and "_.-~": no
    client text closes the <...>), relative (no client Host repeated); pages past JOLLYJET_MAX_PAGE (422) unlinked."""
    cap = current_app.config[MAX_PAGE_KEY]
    pages = [(rel, pagination[field]) for rel, field in _LINK_RELATIONS if pagination.get(field, cap + 1) <= cap]
    if not pages:
        return None
    kept = [(name, _query_value(value)) for name, value in args.items() if name != "page"]
    path = url_for("products.Products")
    return ", ".join(f'<{path}?{urlencode([*kept, ("page", page)])}>; rel="{rel}"' for rel, page in pages)


def _query_value(value: Any) -> str:
    """A validated query argument as the query string spells it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return f"{value:f}"  # plain digits, never an exponent (the Money field refuses one)
    return str(value)
