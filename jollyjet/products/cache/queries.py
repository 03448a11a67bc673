"""Cached list pages, counts and the category list under their filters' generations (rules: invalidation.py).

A read registers its filters and reads, in one script, the global generation, the
generations of the aspects it depends on and the result stored under all of them (the
key names the query's hash and every generation; a hit is that one round trip), and a
fill lands only while none of them moved and the registration held
(scripts.FILL_FILTERED). A write that changes an aspect bumps it, so every result
computed before the write becomes unreachable and every fill computed before it is
refused: the version guard, leases and single flight work for lists as for products.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from jollyjet.cache.keys import CacheKeys, TtlPolicy, query_hash
from jollyjet.cache.store import CacheBackend, CacheError
from jollyjet.products.cache import invalidation
from jollyjet.products.cache.codec import Codec
from jollyjet.products.cache.read_through import CachedValue, ReadThrough
from jollyjet.products.domain import ProductQuery, ProductRecord, Read

log = logging.getLogger(__name__)
T = TypeVar("T")
# How long past its expiry a result's filters stay registered, beyond the longest result TTL.
_REGISTRATION_MARGIN_S = 60


class QueryResults:
    """Lists, counts and categories through the cache, and the invalidation of those a write changed."""

    def __init__(
        self,
        cache: CacheBackend,
        keys: CacheKeys,
        ttl: TtlPolicy,
        reader: ReadThrough,
        list_ttl_s: int,
        lease_ttl_ms: int,
    ) -> None:
        self.cache = cache
        self.keys = keys
        self.ttl = ttl
        self.reader = reader
        self.list_ttl_s = list_ttl_s
        # A registration outlives every result filled under it (the fill extends it by this much).
        longest_result_s = list_ttl_s * (1 + ttl.jitter) + _REGISTRATION_MARGIN_S
        self.horizon_ms = int(longest_result_s * 1000) + lease_ttl_ms

    def read(
        self,
        kind: str,
        query: ProductQuery,
        compute: Callable[[], T],
        value_codec: Codec[T],
        moved_on: Callable[[T], bool] | None = None,
    ) -> Read[T]:
        """A list page, count or category list (kind "categories": query is the unfiltered one):
        hit, single-flight fill, or database read (BYPASS on Redis errors).

        moved_on(value): the decoded value shows parts newer than when it was stored (a page's
        items, rewritten by writes that finished). It is served only after it is stored again
        under the generations it was read with, which proves no write changed what it depends
        on since: otherwise it is a miss."""
        filters = query.filters()
        member = invalidation.filters_member(filters)
        filter_keys = [self.keys.filter_generation(filters, a) for a in invalidation.aspects(kind, query)]
        registry = self.keys.filter_registry
        normalized = query.normalized() if kind == "list" else filters
        try:
            # One round trip: registration, generations and the result stored under them.
            generations, cached = self.cache.read_filtered(
                self.keys.generation,
                registry,
                self.keys.writes_in_flight,
                filter_keys,
                member,
                self.horizon_ms,
                self.keys.query_result_prefix(kind),
                query_hash(normalized),
            )
        except CacheError:
            return self.reader.bypass(kind, compute)
        key = self.keys.query_result(kind, generations[0], normalized, generations[1:])
        first_lookup = [cached]

        def lookup() -> bytes | None:
            # The script's answer serves the first look; later ones (after a lock or a wait) ask again.
            return first_lookup.pop() if first_lookup else self.cache.get(key)

        def fill(_token: str, value: T) -> bool:
            ttl_s = self.ttl.seconds(self.list_ttl_s)
            payload = value_codec.encode(value)
            return self.cache.fill_filtered(
                self.keys.generation, registry, key, filter_keys, generations, member, self.horizon_ms, payload, ttl_s
            )

        def decode(raw: bytes) -> T:
            value = value_codec.decode(raw)
            if moved_on is not None and moved_on(value) and not fill("", value):
                raise ValueError(f"a {kind} result's generations moved while its parts were read")
            return value

        return self.reader.read(
            CachedValue(
                kind=kind,
                lookup=lookup,
                decode=decode,
                lock_key=self.keys.fill_lock(key),
                compute=compute,
                fill=fill,
            )
        )

    def invalidate(self, before: ProductRecord | None, after: ProductRecord | None, token: str = "") -> int:
        """After a write with a known before-image (None: created/deleted): bump what it changed and
        finish the write's catalog mark (token); how many generations moved."""
        stale: set[str] = set()
        everything = False
        for member in self.cache.live_filters(self.keys.filter_registry):
            filters = invalidation.filters_of(member)
            if filters is None:  # not written by this code: compare nothing, invalidate everything
                log.warning("unreadable filter registration; invalidating every list and count")
                everything = True
                break
            stale.update(
                self.keys.filter_generation(filters, a) for a in invalidation.changed_aspects(filters, before, after)
            )
        return self.cache.finish_catalog_write(
            self.keys.writes_in_flight, self.keys.generation, sorted(stale), token, bump_global=everything
        )
