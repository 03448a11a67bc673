"""The cache interface the application depends on, and its error types.

One implementation: RedisCacheBackend (redis-py), on Redis in production and in the
integration tests, on fakeredis in the unit tests (tests/support/fake_cache.py: the same
Lua scripts). The contract tests (tests/unit/test_backend_contract.py) run on both.

Versioned entries hold a product's serialized representation with the version it
was read at. Writes and fills carry that version; the backend refuses to replace
a newer one. A tombstone is a versioned entry without data.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from jollyjet.cache.keys import ProductKeys


class CacheError(Exception):
    """Redis failed or timed out; callers fall back to the database."""


class CacheUnavailable(CacheError):
    """The circuit breaker is open: Redis was not even tried."""


@dataclass(frozen=True)
class VersionedEntry:
    """A cached entry: its version and payload, or payload None for a tombstone (or a cached absence).

    pending: a write of the product began after it was stored (scripts.MARK_PRODUCT_WRITE);
    it may be older than MongoDB and is never served.
    """

    version: int
    payload: bytes | None
    pending: bool = False
    settled: bool = False  # its write finished invalidating lists (scripts.MARK_SETTLED)

    @property
    def is_tombstone(self) -> bool:
        return self.payload is None


class CacheBackend(Protocol):
    """Cache operations used by the service. Every method may raise CacheError."""

    # --- plain keys -------------------------------------------------------
    def get(self, key: str) -> bytes | None:
        """Value of key, or None."""

    def set(self, key: str, value: bytes, ttl_s: int) -> None:
        """Store value with a TTL in seconds."""

    def delete(self, *keys: str) -> int:
        """Remove keys (non-blocking UNLINK); returns how many existed."""

    def exists(self, key: str) -> bool:
        """Does key exist?"""

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Values of many keys in one round trip."""

    def ttl(self, key: str) -> int | None:
        """Remaining TTL in seconds; None if key is missing; -1 if it has no TTL."""

    def ttl_many(self, keys: Sequence[str]) -> list[int | None]:
        """ttl() of many keys in one round trip."""

    def expire(self, key: str, ttl_s: int) -> bool:
        """Give an existing key a TTL in seconds; False when the key is missing."""

    def scan(self, pattern: str, batch_size: int) -> Iterator[list[str]]:
        """Keys matching pattern, in batches (SCAN, never KEYS)."""

    def ping(self) -> bool:
        """True when the backend answers."""

    # --- versioned entries (products) --------------------------------------
    def get_versioned(self, key: str) -> VersionedEntry | None:
        """The versioned entry at key, or None."""

    def get_versioned_many(self, keys: Sequence[str]) -> list[VersionedEntry | None]:
        """Versioned entries of many keys in one round trip."""

    def mark_write(
        self, product: ProductKeys | None, writes_key: str, generation_key: str, token: str, ttl_ms: int
    ) -> None:
        """Before a write is sent to MongoDB: mark it in flight for the product (None for a create) and the catalog."""

    def abandon_write(self, product: ProductKeys | None, writes_key: str, generation_key: str, token: str) -> None:
        """A marked write that certainly changed nothing: drop its marks."""

    def swap_versioned(
        self, key: str, lease_key: str, pending_key: str, payload: bytes, version: int, ttl_s: int, token: str
    ) -> tuple[bool, bytes | None]:
        """The write-through of a marked write (token '' for a create): landed, and the replaced payload if it
        was exactly version - 1 and settled (the before-image). A write whose mark lapsed lands nothing."""

    def fill_versioned(
        self,
        key: str,
        lease_key: str,
        pending_key: str,
        token: str,
        payload: bytes,
        version: int,
        ttl_s: int,
        settled: bool = False,
    ) -> bool:
        """Fill after a miss: lands only if the lease is still ours, no write of it is in flight and nothing
        newer is cached (settled: the entry may serve the next write as a before-image, see mark_settled)."""

    def fill_absent(self, key: str, lease_key: str, pending_key: str, token: str, ttl_s: int) -> bool:
        """Fill after a miss that found no product in MongoDB, under the same conditions as fill_versioned."""

    def mark_settled(self, key: str, version: int) -> bool:
        """The write of `version` finished its invalidation: its entry may now be a before-image."""

    def tombstone(self, key: str, lease_key: str, pending_key: str, version: int, ttl_s: int, token: str = "") -> bool:
        """Replace the entry by a tombstone at version (unless newer); revoke leases; finish the write's mark."""

    def evict_versioned(self, key: str, lease_key: str, version: int) -> bool:
        """Remove the entry only while it still holds exactly version; always revoke leases."""

    # --- generations (lists, counts) ---------------------------------------
    def get_generation(self, key: str) -> int:
        """Current generation (initialized from the server clock when missing)."""

    # --- filter generations (lists, counts: products/catalog_writes.py) -----
    def read_filtered(
        self,
        generation_key: str,
        registry_key: str,
        writes_key: str,
        filter_keys: Sequence[str],
        member: str,
        horizon_ms: int,
        result_prefix: str,
        query_hash: str,
    ) -> tuple[list[int], bytes | None]:
        """Register the filters; the global and the filter generations (initialized when missing; the global
        one moved forward first if a write in flight lapsed), and
        the result cached under them (key: keys.query_result), or None. One round trip."""

    def fill_filtered(
        self,
        generation_key: str,
        registry_key: str,
        key: str,
        filter_keys: Sequence[str],
        generations: Sequence[int],
        member: str,
        horizon_ms: int,
        payload: bytes,
        ttl_s: int,
    ) -> bool:
        """Store a result only while all its generations are unchanged and its filters stayed registered."""

    def live_filters(self, registry_key: str) -> list[str]:
        """The registered filters (lapsed registrations are dropped)."""

    def finish_catalog_write(
        self, writes_key: str, generation_key: str, filter_keys: Sequence[str], token: str, bump_global: bool
    ) -> int:
        """A write's list invalidation: increment the filter generations that exist (and the global one
        when asked), then drop the write's catalog mark; returns how many generations moved."""

    # --- ranked sets (read popularity) ---------------------------------------
    def incr_scores(self, key: str, increments: Mapping[str, float]) -> None:
        """Add to members' scores in one round trip (ZINCRBY)."""

    def top_members(self, key: str, start: int, stop: int) -> list[str]:
        """Members ranked start..stop (inclusive, highest score first)."""

    def trim_ranked(self, key: str, keep: int) -> int:
        """Keep only the keep highest-scored members; returns how many were removed."""

    def remove_members(self, key: str, members: Sequence[str]) -> int:
        """Remove members; returns how many existed."""

    # --- single-flight locks -------------------------------------------------
    def acquire_lock(self, key: str, ttl_ms: int) -> str | None:
        """Take a short lock (also a product's fill lease); returns its token or None if held."""

    def acquire_locks(self, keys: Sequence[str], ttl_ms: int) -> list[str | None]:
        """acquire_lock of many keys in one round trip (pipelined): each token, or None where held."""

    def release_lock(self, key: str, token: str) -> None:
        """Release the lock if it is still ours."""
