"""Request and response schemas (marshmallow). Input is strict: unknown fields and wrong types are 422."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from flask import current_app
from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates, validates_schema

from jollyjet.products.domain import SORT_FIELDS

MAX_PRICE = Decimal("1000000000.00")
MAX_STOCK = 1_000_000_000
# Regexp validators use re.match: anchored at the start only, and "$" also matches
# before a trailing newline, so patterns end in \Z.
_TEXT = validate.Regexp(r"\s*\S", error="must contain a non-blank character")
_PLAIN_DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?")
SORT_CHOICES = tuple(f"{sign}{name}" for name in SORT_FIELDS for sign in ("", "-"))


def _money_ok(value: Decimal) -> None:
    try:
        exact = value == value.quantize(Decimal("0.01"))
    except InvalidOperation:
        return  # too many digits to quantize: far beyond MAX_PRICE, which the Range validator reports
    if not exact:
        raise ValidationError("must have at most two decimal places")


class Money(fields.Decimal):
    """Exact money: a JSON number, or a string of plain decimal digits such as "19.99".

    Decimal() alone would also take " 1.00", "1_000" and "1E+2"; a price string is not
    the place for Python's number syntax.
    """

    def _validated(self, value: Any) -> Decimal:
        if isinstance(value, str) and not _PLAIN_DECIMAL.fullmatch(value):
            raise self.make_error("invalid")
        return super()._validated(value)


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

    sku = fields.String(
        required=True,
        validate=[
            validate.Length(min=1, max=64),
            validate.Regexp(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z", error="letters, digits, '.', '_' and '-' only"),
        ],
    )
    name = fields.String(required=True, validate=[validate.Length(min=1, max=200), _TEXT])
    description = fields.String(load_default="", validate=validate.Length(max=5000))
    price = Money(
        required=True,
        validate=[validate.Range(min=Decimal(0), max=MAX_PRICE), _money_ok],
        metadata={"description": 'Exact decimal with at most two places, e.g. "19.99".'},
    )
    currency = fields.String(
        load_default="USD", validate=validate.Regexp(r"[A-Z]{3}\Z", error="ISO 4217 code, e.g. USD")
    )
    category = fields.String(required=True, validate=[validate.Length(min=1, max=100), _TEXT])
    tags = fields.List(
        fields.String(validate=[validate.Length(min=1, max=50), _TEXT]),
        load_default=list,
        validate=validate.Length(max=20),
    )
    stock = fields.Integer(strict=True, load_default=0, validate=validate.Range(min=0, max=MAX_STOCK))
    is_active = StrictBoolean(load_default=True)


class ProductPatchSchema(ProductInputSchema):
    """PATCH: any subset of the input fields, at least one."""

    @validates_schema
    def _not_empty(self, data: dict[str, Any], **_: Any) -> None:
        if not data:
            raise ValidationError("send at least one field to change", "_schema")


class ProductSchema(Schema):
    """A product as the API returns it (documentation; responses are built by product_to_api)."""

    id = fields.String(metadata={"description": "ObjectId hex string"})
    sku = fields.String()
    name = fields.String()
    description = fields.String()
    price = fields.String(metadata={"description": "Exact decimal with two places"})
    currency = fields.String()
    category = fields.String()
    tags = fields.List(fields.String())
    stock = fields.Integer()
    is_active = fields.Boolean()
    version = fields.Integer()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class ProductFilterSchema(StrictSchema):
    """Filters shared by list and count."""

    category = fields.String(validate=validate.Length(min=1, max=100))
    tag = fields.String(validate=validate.Length(min=1, max=50))
    min_price = Money(validate=[validate.Range(min=Decimal(0), max=MAX_PRICE), _money_ok])
    max_price = Money(validate=[validate.Range(min=Decimal(0), max=MAX_PRICE), _money_ok])
    in_stock = fields.Boolean()
    is_active = fields.Boolean()
    q = fields.String(
        validate=[
            validate.Length(min=1, max=100),
            # MongoDB refuses a $regex with an embedded NUL (an OperationFailure, i.e. a 500).
            validate.Regexp(r"[^\x00]*\Z", error="must not contain NUL characters"),
        ],
        metadata={"description": "Case-insensitive name search"},
    )

    @validates_schema
    def _price_range(self, data: dict[str, Any], **_: Any) -> None:
        low, high = data.get("min_price"), data.get("max_price")
        if low is not None and high is not None and low > high:
            raise ValidationError("min_price must not exceed max_price", "min_price")


class ProductListQuerySchema(ProductFilterSchema):
    """Filters plus sort and pagination."""

    sort = fields.String(load_default="-created_at", validate=validate.OneOf(SORT_CHOICES))
    page = fields.Integer(load_default=1, validate=validate.Range(min=1))
    page_size = fields.Integer(load_default=20, validate=validate.Range(min=1))

    @validates("page")
    def _page_cap(self, value: int, **_: Any) -> None:
        cap = current_app.config["JOLLYJET_MAX_PAGE"]
        if value > cap:
            raise ValidationError(f"must be at most {cap}")

    @validates("page_size")
    def _page_size_cap(self, value: int, **_: Any) -> None:
        cap = current_app.config["JOLLYJET_MAX_PAGE_SIZE"]
        if value > cap:
            raise ValidationError(f"must be at most {cap}")


class CountSchema(Schema):
    count = fields.Integer()


class CategorySchema(Schema):
    category = fields.String()
    count = fields.Integer()
