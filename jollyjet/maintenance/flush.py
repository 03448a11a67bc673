"""Drop every cached key of this service (all schema versions): SCAN + UNLINK under the prefix, never FLUSHDB.

Safe while serving: a fill that read the database before the drop holds a lease that
is gone with it, so it cannot land; the generation restarts from the server clock,
above every old one.

The current schema's popularity sets are kept: they are read statistics, not cached
data (nothing in them can be stale), and warming needs them to refill what was just
dropped — without them, "drop the cache, then warm it" would warm nothing.
"""

from __future__ import annotations

from jollyjet.cache.backend import CacheBackend
from jollyjet.cache.keys import CacheKeys, schema_of


def drop_service_keys(cache: CacheBackend, keys: CacheKeys, batch: int) -> int:
    """Delete all keys under `<prefix>:v*` except the popularity sets; returns how many were deleted."""
    kept = {keys.popular_products, keys.popular_queries}
    deleted = 0
    for found in cache.scan(keys.service_pattern(), batch):
        # The glob `<prefix>:v*` also matches e.g. `<prefix>:visits`, which has no schema
        # (schema_of is None) and is not ours: only `<prefix>:v<N>:` keys are.
        deleted += cache.delete(*(key for key in found if key not in kept and schema_of(key) is not None))
    return deleted
