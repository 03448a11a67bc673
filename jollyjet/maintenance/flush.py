"""Drop every key of this service (all schema versions): SCAN + UNLINK under the prefix, never FLUSHDB.

Safe while serving: a fill that read the database before the drop holds a lease that
is gone with it, so it cannot land; the generation restarts from the server clock,
above every old one.
"""

from __future__ import annotations

from jollyjet.cache.backend import CacheBackend
from jollyjet.cache.keys import CacheKeys


def drop_service_keys(cache: CacheBackend, keys: CacheKeys, batch: int) -> int:
    """Delete all keys under `<prefix>:v*`; returns how many were deleted."""
    deleted = 0
    for found in cache.scan(keys.service_pattern(), batch):
        deleted += cache.delete(*found)
    return deleted
