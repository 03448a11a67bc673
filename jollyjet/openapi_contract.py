"""What the OpenAPI document says beyond the schemas: error responses, money, configured caps.

The document is a contract that client generators and the schemathesis suite hold the
service to, so every status an operation can answer is listed (`errors`), and a value
that depends on settings (page caps) is written from the same config key the validator
reads.
"""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from flask import Flask
from flask_smorest import Api, Blueprint
from marshmallow import fields

from jollyjet.products.schemas import (
    CAP_SETTING,
    MAX_PAGE_SIZE_KEY,
    Money,
    ProductIdConverter,
    default_page_size,
    product_id_schema,
)

# Why each status is answered; shared by every operation that lists it.
_WHY = {
    400: "The body is not valid JSON (or is empty), or the query string is not UTF-8",
    401: "Missing or wrong bearer token",
    404: "No such resource (unknown or malformed id)",
    409: "Conflict with the current state",
    412: "If-Match does not name the current version",
    413: "The body is larger than JOLLYJET_MAX_BODY_BYTES (the connection is closed)",
    415: "The body is not Content-Type: application/json",
    422: "Validation failed; `errors` names each bad field",
    429: "Rate limited (q= searches, deep pages, failed authentication per client address; docs/operations.md)",
    503: "A dependency (MongoDB, or for admin endpoints the broker or Redis) is unreachable, "
    "or too many requests of the process wait on MongoDB (its bulkhead)",
}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}, "required": True}},
    429: {"Retry-After": {"schema": {"type": "string"}, "required": True}},
    503: {"Retry-After": {"schema": {"type": "string"}, "required": True}},
}

F = Callable[..., Any]


def errors(blp: Blueprint, *codes: int, why: dict[int, str] | None = None) -> Callable[[F], F]:
    """Document each status in codes as a JSON error (the Error schema) on one operation."""

    if 401 in codes and 429 not in codes:
        codes = (*codes, 429)  # every operation that authenticates has the failed-authentication limit

    def decorate(view: F) -> F:
        for code in codes:
            description = (why or {}).get(code) or _WHY.get(code) or HTTPStatus(code).phrase
            view = blp.alt_response(code, schema="Error", description=description, headers=_HEADERS.get(code))(view)
        return view

    return decorate


def register_contract(api: Api, app: Flask) -> None:
    """Path converters, and what the spec generator must know about Money, caps and schema keywords."""
    # Money documents its own oneOf (text or number); without this, apispec would add
    # the Decimal field's "type": "number" beside it and forbid the text form.
    api.register_field(Money, None, None)
    app.url_map.converters["product_id"] = ProductIdConverter
    api.register_converter(ProductIdConverter, product_id_schema)

    def configured_caps(_converter: Any, field: fields.Field, **_: Any) -> dict[str, Any]:
        setting = field.metadata.get(CAP_SETTING)
        if setting is None:
            return {}
        cap = app.config[setting]
        if setting == MAX_PAGE_SIZE_KEY:
            return {"maximum": cap, "default": default_page_size(cap)}
        return {"maximum": cap}

    converter = api.ma_plugin.converter
    converter.add_attribute_function(configured_caps)
    plain_schema = converter.schema2jsonschema

    # apispec has no hook for schema-level keywords (such as minProperties); a schema's
    # Meta.openapi_extra is merged into its JSON Schema here.
    def schema_with_extras(schema: Any) -> dict[str, Any]:
        jsonschema: dict[str, Any] = plain_schema(schema)
        jsonschema.update(getattr(getattr(schema, "Meta", None), "openapi_extra", {}))
        return jsonschema

    converter.schema2jsonschema = schema_with_extras
