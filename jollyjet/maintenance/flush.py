"""Drop every cached key of this service (all schema versions): SCAN + UNLINK under the prefix, never FLUSHDB.

Safe while serving: a fill that read the database before the drop holds a lease that
is gone with it, so it cannot land; the generation restarts from the server clock,
above every old one.

What a new cache epoch keeps is kept here too (keys.survives_new_epoch): job locks and
beat claims, whose loss would let a running job or a claimed beat slot run twice, and
the read counts (popularity sets), which are statistics, never served, and what warming
needs to refill what was just dropped: without them, "drop the cache, then warm it"
would warm nothing.
"""

from __future__ import annotations

from jollyjet.cache.backend import CacheBackend
from jollyjet.cache.keys import CacheKeys, schema_of, survives_new_epoch


def drop_service_keys(cache: CacheBackend, keys: CacheKeys, batch: int) -> int:
    """Delete all keys under `<prefix>:v*` but those that survive a new epoch; returns how many were deleted."""
    deleted = 0
    for found in cache.scan(keys.service_pattern(), batch):
        # The glob `<prefix>:v*` also matches e.g. `<prefix>:visits`, which has no schema
        # (schema_of is None) and is not ours: only `<prefix>:v<N>:` keys are.
        deleted += cache.delete(*(k for k in found if schema_of(k) is not None and not survives_new_epoch(k)))
    return deleted
