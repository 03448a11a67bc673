"""Request and response schemas (marshmallow). Input is strict: unknown fields and wrong types are 422."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from flask import current_app
from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates, validates_schema

from jollyjet.products.record import SORT_FIELDS

MAX_PRICE = Decimal("1000000000.00")
MAX_STOCK = 1_000_000_000
_TEXT = r"\S"  # at least one non-blank character
SORT_CHOICES = tuple(f"{sign}{name}" for name in SORT_FIELDS for sign in ("", "-"))


def _money_ok(value: Decimal) -> None:
    if value != value.quantize(Decimal("0.01")):
        raise ValidationError("must have at most two decimal places")


class StrictSchema(Schema):
    class Meta:
        unknown = RAISE


class ProductInputSchema(StrictSchema):
    """Fields a client may send. POST and PUT need the required ones; PATCH any subset."""

    sku = fields.String(
        required=True,
        validate=[
            validate.Length(min=1, max=64),
            validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9._-]*$", error="letters, digits, '.', '_' and '-' only"),
        ],
    )
    name = fields.String(required=True, validate=[validate.Length(min=1, max=200), validate.Regexp(_TEXT)])
    description = fields.String(load_default="", validate=validate.Length(max=5000))
    price = fields.Decimal(
        required=True,
        validate=[validate.Range(min=Decimal(0), max=MAX_PRICE), _money_ok],
        metadata={"description": 'Exact decimal with at most two places, e.g. "19.99".'},
    )
    currency = fields.String(
        load_default="USD", validate=validate.Regexp(r"^[A-Z]{3}$", error="ISO 4217 code, e.g. USD")
    )
    category = fields.String(required=True, validate=[validate.Length(min=1, max=100), validate.Regexp(_TEXT)])
    tags = fields.List(
        fields.String(validate=[validate.Length(min=1, max=50), validate.Regexp(_TEXT)]),
        load_default=list,
        validate=validate.Length(max=20),
    )
    stock = fields.Integer(strict=True, load_default=0, validate=validate.Range(min=0, max=MAX_STOCK))
    is_active = fields.Boolean(load_default=True, truthy={True}, falsy={False})


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
    min_price = fields.Decimal(validate=[validate.Range(min=Decimal(0), max=MAX_PRICE), _money_ok])
    max_price = fields.Decimal(validate=[validate.Range(min=Decimal(0), max=MAX_PRICE), _money_ok])
    in_stock = fields.Boolean()
    is_active = fields.Boolean()
    q = fields.String(
        validate=validate.Length(min=1, max=100), metadata={"description": "Case-insensitive name search"}
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
