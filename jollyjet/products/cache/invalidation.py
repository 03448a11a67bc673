"""Which cached lists, counts and categories a product write can change: as fine as the data allows.

The idea is django-cacheops' (each cached query registers the conditions it depends on;
a write invalidates only the queries whose conditions match the object before or after
it), made exact for this API's fixed filters and extended with the sort order:

- Every list/count/categories read registers its filters (products/cache/repository.py) and is
  stored under the generations of the *aspects* it depends on: a count on the
  filters' `members`, a page on `members` and on the order by its sort field
  (`order.<field>`). A page is stored as its ordered ids and total; the items' bodies
  come from the product entries, which every write updates itself. The category list
  (a count per category of the unfiltered set) depends on `members` and on the
  grouping by category (`group.category`).
- A write compares the product before and after it against every registered filter
  set and bumps only the aspects it changed: a product entering or leaving the
  matching set changes `members`; one that stays in it changes `order.<f>` for each
  sort field whose value changed, and `group.category` if its category changed. A
  stock change that keeps `in_stock`, a new description, a price change under a
  filter sorted by name: nothing to invalidate.
- The name search `q` is matched by MongoDB's case-insensitive regex, which this module
  does not re-implement: a filter with `q` is assumed to match (a superset is safe), and
  a name change counts as a change of its members.
- When the before-image is unknown (the previous version was not cached), the write
  bumps the global generation instead: every list, count and category list.
"""

from __future__ import annotations

from typing import Any

import orjson

from jollyjet.products.domain import SORT_FIELDS, ProductQuery, ProductRecord

MEMBERS = "members"
# The category list groups by this field: a product that stays in a set but changes category moves a count.
GROUP_CATEGORY = "group.category"


def order_aspect(sort: str) -> str:
    """The aspect a page sorted by `sort` (e.g. "-price") depends on besides its members (named after the field)."""
    return f"order.{SORT_FIELDS[sort.lstrip('-')]}"


def aspects(kind: str, query: ProductQuery) -> list[str]:
    """The aspects a cached count, list page or category list depends on."""
    if kind == "count":
        return [MEMBERS]
    if kind == "categories":
        return [MEMBERS, GROUP_CATEGORY]
    return [MEMBERS, order_aspect(query.sort)]


def filters_member(filters: dict[str, Any]) -> str:
    """The registry member naming a filter set (canonical JSON)."""
    return orjson.dumps(filters, option=orjson.OPT_SORT_KEYS).decode()


def filters_of(member: str) -> dict[str, Any] | None:
    """The filter set a registry member names, or None if it is not one."""
    try:
        value = orjson.loads(member)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def matches(filters: dict[str, Any], record: ProductRecord) -> bool:
    """Could the record match these filters? Exact for every filter but `q` (assumed to match)."""
    checks = {
        "category": lambda v: record.category == v,
        "tag": lambda v: v in record.tags,
        "min_price_cents": lambda v: record.price_cents >= v,
        "max_price_cents": lambda v: record.price_cents <= v,
        "in_stock": lambda v: (record.stock > 0) == v,
        "is_active": lambda v: record.is_active == v,
    }
    # An unknown condition (a newer deploy's filter) is ignored: a superset, so safe.
    return all(check(filters[name]) for name, check in checks.items() if name in filters)


def changed_aspects(filters: dict[str, Any], before: ProductRecord | None, after: ProductRecord | None) -> set[str]:
    """The aspects of this filter set that a write from `before` to `after` changes (None: absent)."""
    in_before = before is not None and matches(filters, before)
    in_after = after is not None and matches(filters, after)
    if not in_before and not in_after:
        return set()
    if before is None or after is None or in_before != in_after:
        return {MEMBERS}
    if "q" in filters and before.name != after.name:
        return {MEMBERS}
    changed = {f"order.{field}" for field in SORT_FIELDS.values() if getattr(before, field) != getattr(after, field)}
    if before.category != after.category:
        changed.add(GROUP_CATEGORY)
    return changed
