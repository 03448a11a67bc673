"""What the product API accepts and returns: marshmallow schemas and the id path converter.

Input is strict: unknown fields and wrong types are 422.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from flask import Flask
from marshmallow import RAISE, Schema, ValidationError, fields, validate
from werkzeug.routing import BaseConverter

from jollyjet.api import CAP_SETTING, MAX_PAGE_KEY, MAX_PAGE_SIZE_KEY, AtLeastOneField, PageCaps
from jollyjet.products.record import SORT_FIELDS

if TYPE_CHECKING:
    from flask_smorest import Api

MAX_PRICE = Decimal("1000000000.00")
MAX_STOCK = 1_000_000_000
# Regexp validators use re.match (anchored at the start only; "$" matches before a trailing newline): \Z.
# "Blank" is str.isspace() spelled out: \s differs between ECMA 262 (the document's) and Python (the rule).
_NOT_BLANK = r"[^\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
_TEXT = validate.Regexp(f".*?{_NOT_BLANK}", flags=re.DOTALL, error="must contain a non-blank character")
# How the OpenAPI document states _TEXT (JSON Schema patterns are searched, not anchored).
_TEXT_DOC = {"pattern": _NOT_BLANK}
_PLAIN_DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?")
SORT_CHOICES = tuple(f"{sign}{name}" for name in SORT_FIELDS for sign in ("", "-"))

# The one spelling of a price as text (the rule and the document's pattern): no sign, no leading zeros,
# at most two decimals, at most MAX_PRICE.
MONEY_TEXT = r"(0|[1-9][0-9]{0,8})(\.[0-9]{1,2})?|1000000000(\.00?)?"
MONEY_PATTERN = f"^({MONEY_TEXT})$"
_MONEY_NUMBER_SCHEMA = {"type": "number", "minimum": 0, "maximum": int(MAX_PRICE), "multipleOf": 0.01}
_MONEY_TEXT_SCHEMA = {"type": "string", "pattern": MONEY_PATTERN}


class Money(fields.Decimal):
    """Exact money, 0 to MAX_PRICE with at most two places: a JSON number, or text such as "19.99".

    Not Decimal()'s syntax (" 1.00", "1_000", "1E+2"); range and places checked here, not by validators,
    so the OpenAPI document states this rule rather than apispec's rendering of a Decimal range."""

    def __init__(self, *, text_only: bool = False, **kwargs: Any) -> None:
        # text_only: a query parameter, where every value arrives as text.
        schema: dict[str, Any] = (
            dict(_MONEY_TEXT_SCHEMA) if text_only else {"oneOf": [dict(_MONEY_TEXT_SCHEMA), dict(_MONEY_NUMBER_SCHEMA)]}
        )
        metadata = {**schema, "description": 'Exact decimal, at most two places, e.g. "19.99" or 19.99.'}
        super().__init__(metadata={**metadata, **kwargs.pop("metadata", {})}, **kwargs)

    def _validated(self, value: Any) -> Decimal:
        if isinstance(value, str) and not _PLAIN_DECIMAL.fullmatch(value):
            raise self.make_error("invalid")
        amount = super()._validated(value)
        if not Decimal(0) <= amount <= MAX_PRICE:
            raise ValidationError(f"must be between 0 and {MAX_PRICE}")
        try:
            exact = amount == amount.quantize(Decimal("0.01"))
        except InvalidOperation:  # too many digits to quantize: far beyond MAX_PRICE
            exact = False
        if not exact or (isinstance(value, str) and "." in value and len(value.partition(".")[2]) > 2):
            raise ValidationError("must have at most two decimal places")
        if isinstance(value, str) and not re.fullmatch(MONEY_TEXT, value):
            raise ValidationError('must be plain digits without a sign or leading zeros, e.g. "19.99"')
        return amount


class StrictBoolean(fields.Boolean):
    """JSON true/false only (truthy={True} alone would still take 1 and 0, which compare equal)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class StrictSchema(Schema):
    class Meta:
        unknown = RAISE


class ProductInputSchema(StrictSchema):
    """Fields a client may send. POST and PUT need the required ones; PATCH any subset."""

    class Meta(StrictSchema.Meta):
        # Shown by the docs page, and sent as is by the contract tests.
        openapi_extra = {
            "example": {"sku": "MUG-1", "name": "Mug", "price": "9.50", "category": "kitchen", "tags": ["kitchen"]}
        }

    sku = fields.String(
        required=True,
        validate=[
            validate.Length(min=1, max=64),
            validate.Regexp(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z", error="letters, digits, '.', '_' and '-' only"),
        ],
        metadata={"pattern": "^[A-Za-z0-9][A-Za-z0-9._-]*$"},
    )
    name = fields.String(required=True, validate=[validate.Length(min=1, max=200), _TEXT], metadata=_TEXT_DOC)
    description = fields.String(load_default="", validate=validate.Length(max=5000))
    price = Money(required=True)
    # The form of an ISO 4217 code, not the list (it would go stale; no currency arithmetic): docs/api.md.
    currency = fields.String(
        load_default="USD",
        validate=validate.Regexp(r"[A-Z]{3}\Z", error="three upper-case letters, e.g. USD"),
        metadata={"pattern": "^[A-Z]{3}$", "description": "Three upper-case letters (ISO 4217 form), e.g. USD"},
    )
    category = fields.String(required=True, validate=[validate.Length(min=1, max=100), _TEXT], metadata=_TEXT_DOC)
    tags = fields.List(
        fields.String(validate=[validate.Length(min=1, max=50), _TEXT], metadata=_TEXT_DOC),
        load_default=list,
        validate=validate.Length(max=20),
    )
    stock = fields.Integer(strict=True, load_default=0, validate=validate.Range(min=0, max=MAX_STOCK))
    is_active = StrictBoolean(load_default=True)


class ProductPatchSchema(ProductInputSchema, AtLeastOneField):
    """PATCH: any subset of the input fields, at least one."""

    class Meta(StrictSchema.Meta):
        openapi_extra = {"minProperties": 1, "example": {"stock": 12}}  # what AtLeastOneField enforces


class ProductSchema(Schema):
    """A product as the API returns it (built by product_to_api: test_openapi_contract.py holds them together)."""

    id = fields.String(required=True, metadata={"description": "ObjectId hex string", "pattern": "^[0-9a-f]{24}$"})
    sku = fields.String(required=True)
    name = fields.String(required=True)
    description = fields.String(required=True)
    price = fields.String(
        required=True, metadata={"description": "Exact decimal with two places", "pattern": "^[0-9]+\\.[0-9]{2}$"}
    )
    currency = fields.String(required=True)
    category = fields.String(required=True)
    tags = fields.List(fields.String(), required=True)
    stock = fields.Integer(required=True)
    is_active = fields.Boolean(required=True)
    version = fields.Integer(required=True, metadata={"minimum": 1})
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)


class ProductFilterSchema(StrictSchema):
    """Filters shared by list and count. min_price above max_price is an empty range: nothing matches."""

    category = fields.String(validate=validate.Length(min=1, max=100))
    tag = fields.String(validate=validate.Length(min=1, max=50))
    min_price = Money(text_only=True)
    max_price = Money(text_only=True)
    in_stock = fields.Boolean()
    is_active = fields.Boolean()
    q = fields.String(
        validate=[
            validate.Length(min=1, max=100),
            # MongoDB refuses a $regex with an embedded NUL (an OperationFailure, i.e. a 500).
            validate.Regexp(r"[^\x00]*\Z", error="must not contain NUL characters"),
        ],
        metadata={"description": "Case-insensitive name search", "pattern": "^[^\\x00]*$"},
    )


class ProductListQuerySchema(ProductFilterSchema, PageCaps):
    """Filters plus sort and pagination. Caps come from settings; the OpenAPI document states them."""

    sort = fields.String(load_default="-created_at", validate=validate.OneOf(SORT_CHOICES))
    page = fields.Integer(load_default=1, validate=validate.Range(min=1), metadata={CAP_SETTING: MAX_PAGE_KEY})
    # No load_default: the default is DEFAULT_PAGE_SIZE cut to the configured cap (PageCaps' post_load).
    page_size = fields.Integer(validate=validate.Range(min=1), metadata={CAP_SETTING: MAX_PAGE_SIZE_KEY})


class CountSchema(Schema):
    count = fields.Integer(required=True)


class CategorySchema(Schema):
    category = fields.String(required=True)
    count = fields.Integer(required=True)


# A product id segment is anything but a sibling route's name: matched as an id, `/products/count` would
# get PUT, PATCH and DELETE in OPTIONS and a 405's Allow. Malformed ids still reach the handler (404).
RESERVED = ("count",)


class ProductIdConverter(BaseConverter):
    """One path segment that is not a reserved sibling route name."""

    regex = "(?!(?:" + "|".join(RESERVED) + r")(?:/|$))[^/]+"


def register_product_contract(api: Api, app: Flask) -> None:
    """Before the blueprints: the id path converter, and Money as it documents itself."""
    # Money states its own oneOf (text or number); apispec would add "type": "number" and forbid the text form.
    api.register_field(Money, None, None)
    app.url_map.converters["product_id"] = ProductIdConverter
    api.register_converter(ProductIdConverter, product_id_schema)


def product_id_schema(_: ProductIdConverter) -> dict[str, Any]:
    """How the OpenAPI document describes the segment."""
    # In words, not {"not": {"enum": [...]}}: a fuzzer would send /products/count, another operation's URL.
    return {"type": "string", "description": "Product id (any segment but " + ", ".join(RESERVED) + ")"}
