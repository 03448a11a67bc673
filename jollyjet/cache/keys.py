"""The one place cache key names are built.

Keys are built only from validated values: ObjectId hex strings and hashes of a
normalized query, never raw client text. Hash tags (`{...}`) keep the keys that a
Lua script touches together in one Redis Cluster slot:

- a product's entry and its fill lease share `{<id>}`;
- list/count entries share `{products}` with the generation key they are
  guarded by (the price: all list caches live on one cluster node; they are small
  and short-lived, and the alternative — a generation per shard — would make
  invalidation a fan-out).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import orjson

# Bump when the cached representation changes shape, so a deploy never reads old bytes.
SCHEMA_VERSION = 1

_OBJECT_ID = re.compile(r"^[0-9a-f]{24}$")
_PREFIX = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")


@dataclass(frozen=True)
class ProductKeys:
    """Keys of one product: the cached entry and its fill lease (same slot)."""

    entry: str
    lease: str


class CacheKeys:
    """Builds every key of this service under `<prefix>:v<schema>:`."""

    def __init__(self, prefix: str, schema: int = SCHEMA_VERSION) -> None:
        if not _PREFIX.match(prefix):
            raise ValueError(f"invalid cache key prefix {prefix!r}")
        self.prefix = prefix
        self.schema = schema
        self.root = f"{prefix}:v{schema}"

    def product(self, product_id: str) -> ProductKeys:
        """Entry and lease key for a product id (must be a lowercase ObjectId hex string)."""
        if not _OBJECT_ID.match(product_id):
            raise ValueError("product keys are built from ObjectId strings only")
        base = f"{self.root}:product:{{{product_id}}}"
        return ProductKeys(entry=base, lease=f"{base}:lease")

    @property
    def generation(self) -> str:
        """Generation counter that every product write bumps."""
        return f"{self.root}:products:{{products}}:gen"

    def query_result(self, kind: str, generation: int, normalized_query: dict[str, object]) -> str:
        """Key of a cached list/count result for one generation and query."""
        if kind not in ("list", "count"):
            raise ValueError(f"unknown query result kind {kind!r}")
        return f"{self.root}:products:{{products}}:{kind}:{generation}:{query_hash(normalized_query)}"

    def fill_lock(self, result_key: str) -> str:
        """Single-flight lock for recomputing one query result."""
        return f"{result_key}:lock"

    @property
    def flask_cache_prefix(self) -> str:
        """Prefix of the keys Flask-Caching writes (memoized aggregates)."""
        return f"{self.root}:flask:"

    def popularity(self) -> str:
        """Sorted set of product read counts (used by cache warming)."""
        return f"{self.root}:popularity:products"

    def service_pattern(self) -> str:
        """SCAN pattern matching every key of this service, all schema versions."""
        return f"{self.prefix}:v*"

    def product_pattern(self) -> str:
        """SCAN pattern matching product entries of the current schema."""
        return f"{self.root}:product:*"


def query_hash(normalized_query: dict[str, object]) -> str:
    """Stable short hash of an already-normalized query (sorted keys, canonical values)."""
    canonical = orjson.dumps(normalized_query, option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(canonical, digest_size=12).hexdigest()


def product_id_from_entry_key(key: str) -> str | None:
    """The product id inside an entry key, or None for any other key."""
    match = re.search(r":product:\{([0-9a-f]{24})\}$", key)
    return match.group(1) if match else None
