"""MongoDB documents (mongoengine). Money is integer cents; never a float."""

from __future__ import annotations

from datetime import UTC, datetime

from mongoengine import BooleanField, DateTimeField, Document, IntField, ListField, StringField


def utcnow_ms() -> datetime:
    """Now in UTC, truncated to milliseconds: what MongoDB stores, so cache and DB compare equal."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class ProductDocument(Document):
    """A product. `version` is incremented by every committed update."""

    meta = {
        "collection": "products",
        # Indexes are created by `flask --app app ensure-indexes` (the release phase), never
        # while serving: a Mongo outage at a first query must be a 503, not a crash.
        "auto_create_index": False,
        "indexes": [
            {"fields": ["sku"], "unique": True},
            {"fields": ["category", "price_cents"]},
            {"fields": ["tags"]},
            {"fields": ["-created_at"]},
            {"fields": ["price_cents"]},
        ],
    }

    sku = StringField(required=True)
    name = StringField(required=True)
    description = StringField(default="")
    price_cents = IntField(required=True, min_value=0)
    currency = StringField(required=True)
    category = StringField(required=True)
    tags = ListField(StringField())
    stock = IntField(required=True, min_value=0)
    is_active = BooleanField(required=True)
    version = IntField(required=True, min_value=1)
    created_at = DateTimeField(required=True)
    updated_at = DateTimeField(required=True)
