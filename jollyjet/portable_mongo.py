"""Query forms every MongoDB-speaking server answers alike: the one seam for store quirks.

The multi-process tests run on nx-27017 0.8.1 (a MongoDB wire-protocol server on SQLite,
tests/support/mongo_server.py), which answers three plain MongoDB forms differently.
Each helper returns a form with the same meaning on MongoDB that nx-27017 also gets
right, so the repositories stay plain MongoDB and every workaround is named here
(docs/testing.md lists them). When a server release fixes one, change its helper.
"""

from __future__ import annotations

from typing import Any


def array_contains(value: Any) -> dict[str, Any]:
    """Match an array field holding value.

    MongoDB reads `{field: value}` the same way (and uses the index for `$in` of one
    value too); nx-27017 misses elements with the plain form on an indexed array field.
    """
    return {"$in": [value]}


def null_or_missing() -> dict[str, Any]:
    """Match a field that is null or absent.

    MongoDB reads `{field: None}` the same way; nx-27017 counts only documents without
    the field for that plain form.
    """
    return {"$in": [None]}


def set_to_server_time(*fields: str) -> dict[str, Any]:
    """An update setting fields to the server's clock, stored as a date (millisecond precision).

    A datetime sent with `$set` is stored as a string by nx-27017; `$currentDate` is a
    date on every server, and the server's clock is the one MongoDB itself uses.
    """
    return {"$currentDate": {field: True for field in fields}}
