"""The one place cache key names are built; the bytes format and the TTL policy of what they hold.

Keys are built only from validated values: ObjectId hex strings and hashes of a
normalized query, never raw client text. Hash tags (`{...}`) keep the keys that a
Lua script touches together in one Redis Cluster slot:

- a product's entry and its fill lease share `{<id>}`;
- list, count and category entries share `{products}` with the generation key they are
  guarded by (the price: all list caches live on one cluster node; they are small
  and short-lived, and the alternative — a generation per shard — would make
  invalidation a fan-out).
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

# Bump when the cached representation changes shape, so a deploy never reads old bytes.
SCHEMA_VERSION = 2  # 2: a product entry's `d` is its API body (products/record.py)

_OBJECT_ID = re.compile(r"^[0-9a-f]{24}$")
_PREFIX = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
_NAME = re.compile(r"^[a-z0-9_.-]{1,64}$")


@dataclass(frozen=True)
class ProductKeys:
    """Keys of one product: the cached entry, its fill lease and its writes in flight (same slot)."""

    entry: str
    lease: str
    pending: str


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
        return ProductKeys(entry=base, lease=f"{base}:lease", pending=f"{base}:pending")

    @property
    def generation(self) -> str:
        """Generation counter that every product write bumps."""
        return f"{self.root}:products:{{products}}:gen"

    @property
    def writes_in_flight(self) -> str:
        """Sorted set of the product writes begun and not yet finished in the cache (scripts.MARK_CATALOG_WRITE)."""
        return f"{self.root}:products:{{products}}:writes"

    def query_result(
        self, kind: str, generation: int, normalized_query: dict[str, object], filter_generations: Sequence[int] = ()
    ) -> str:
        """Key of a cached list/count result for one global generation, query and filter generations.

        `<prefix>:<generation>:<query hash>.<filter generation>...`: the read script
        (scripts.READ_FILTERED) builds the same name from the generations it reads.
        """
        tail = "".join(f".{g}" for g in filter_generations)
        return f"{self.query_result_prefix(kind)}{generation}:{query_hash(normalized_query)}{tail}"

    def query_result_prefix(self, kind: str) -> str:
        """What every result key of a kind (list, count or categories) starts with."""
        if kind not in ("list", "count", "categories"):
            raise ValueError(f"unknown query result kind {kind!r}")
        return f"{self.root}:products:{{products}}:{kind}:"

    @property
    def filter_registry(self) -> str:
        """Sorted set of the filters read lately (member: canonical JSON, score: expiry in ms)."""
        return f"{self.root}:products:{{products}}:filters"

    def filter_generation(self, filters: dict[str, object], aspect: str) -> str:
        """Generation of one aspect (members, or the order by one field) of the products matching filters."""
        return f"{self.root}:products:{{products}}:fgen:{query_hash(filters)}:{_plain(aspect)}"

    def fill_lock(self, result_key: str) -> str:
        """Single-flight lock for recomputing one query result."""
        return f"{result_key}:lock"

    @property
    def popular_products(self) -> str:
        """Sorted set of product read counts (cache warming reads it)."""
        return f"{self.root}:popularity:products"

    @property
    def popular_queries(self) -> str:
        """Sorted set of list-query read counts, members are normalized queries."""
        return f"{self.root}:popularity:queries"

    def job_lock(self, job: str) -> str:
        """Lock held while one run of a background job is in progress."""
        return f"{self.root}:job:{_plain(job)}:lock"

    def beat_claim(self, entry: str, slot: int) -> str:
        """Claim of one periodic-schedule slot, so two beat processes send it once."""
        return f"{self.root}:beat:{_plain(entry)}:{slot}"

    def service_pattern(self) -> str:
        """SCAN pattern matching every key of this service, all schema versions."""
        return f"{self.prefix}:v*"

    def product_pattern(self) -> str:
        """SCAN pattern matching product entries of the current schema."""
        return f"{self.root}:product:*"


def _plain(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"invalid name for a key {name!r}")
    return name


def query_hash(normalized_query: dict[str, object]) -> str:
    """Stable short hash of an already-normalized query (sorted keys, canonical values)."""
    canonical = orjson.dumps(normalized_query, option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(canonical, digest_size=12).hexdigest()


def product_id_from_entry_key(key: str) -> str | None:
    """The product id inside an entry key (any schema), or None for any other key."""
    match = _PATTERNS[KeyKind.PRODUCT].search(key)
    return match.group(1) if match else None


def survives_new_epoch(key: str) -> bool:
    """Job locks, beat claims and read counts: they coordinate processes or rank keys for
    warming, and nothing in them is ever served to a reader, so a new cache epoch keeps them."""
    return any(_PATTERNS[kind].search(key) for kind in (KeyKind.JOB_LOCK, KeyKind.BEAT_CLAIM, KeyKind.POPULARITY))


def schema_of(key: str) -> int | None:
    """The schema version a key was written under, or None if it is not one of ours."""
    match = _SCHEMA.match(key)
    return int(match.group(1)) if match else None


def generation_of(key: str) -> int | None:
    """The generation inside a list/count/categories result key (or its fill lock), else None."""
    match = _PATTERNS[KeyKind.RESULT].search(key) or _PATTERNS[KeyKind.RESULT_LOCK].search(key)
    return int(match.group(1)) if match else None


class KeyKind(StrEnum):
    """What a key of this service holds (the cleanup job decides per kind)."""

    PRODUCT = "product"  # versioned entry or tombstone: must have a TTL
    LEASE = "lease"  # fill lease: short TTL
    PENDING_WRITES = "pending_writes"  # one product's writes in flight: the marks' TTL
    WRITES_IN_FLIGHT = "writes_in_flight"  # every product write in flight: no TTL, members lapse by score
    GENERATION = "generation"  # list/count generation: deliberately without TTL
    FILTER_GENERATION = "filter_generation"  # one filter's members/order generation: TTL
    FILTER_REGISTRY = "filter_registry"  # filters read lately: no TTL, members expire by score
    RESULT = "result"  # cached list page or count: TTL
    RESULT_LOCK = "result_lock"  # single-flight lock of a result: short TTL
    POPULARITY = "popularity"  # read counts: without TTL, trimmed by cleanup
    JOB_LOCK = "job_lock"  # one run of a background job: TTL
    BEAT_CLAIM = "beat_claim"  # one periodic slot claimed by a beat process: TTL
    UNKNOWN = "unknown"


_SCHEMA = re.compile(r"^[^:]+:v([0-9]+):")
_PRODUCT = r":product:\{([0-9a-f]{24})\}"
_RESULT = r":products:\{products\}:(?:list|count|categories):([0-9]+):[0-9a-f]+(?:\.[0-9]+)*"
# Each kind by the tail of its key (after `<prefix>:v<schema>`).
_PATTERNS = {
    KeyKind.PRODUCT: re.compile(_PRODUCT + "$"),
    KeyKind.LEASE: re.compile(_PRODUCT + ":lease$"),
    KeyKind.PENDING_WRITES: re.compile(_PRODUCT + ":pending$"),
    KeyKind.WRITES_IN_FLIGHT: re.compile(r":products:\{products\}:writes$"),
    KeyKind.GENERATION: re.compile(r":products:\{products\}:gen$"),
    KeyKind.FILTER_GENERATION: re.compile(r":products:\{products\}:fgen:[0-9a-f]+:[a-z0-9_.-]+$"),
    KeyKind.FILTER_REGISTRY: re.compile(r":products:\{products\}:filters$"),
    KeyKind.RESULT: re.compile(_RESULT + "$"),
    KeyKind.RESULT_LOCK: re.compile(_RESULT + ":lock$"),
    KeyKind.POPULARITY: re.compile(r":popularity:(?:products|queries)$"),
    KeyKind.JOB_LOCK: re.compile(r":job:[a-z0-9_.-]+:lock$"),
    KeyKind.BEAT_CLAIM: re.compile(r":beat:[a-z0-9_.-]+:[0-9]+$"),
}


def kind_of(keys: CacheKeys, key: str) -> KeyKind:
    """The kind of a key under keys.root (current schema); UNKNOWN for anything else."""
    if not key.startswith(keys.root + ":"):
        return KeyKind.UNKNOWN
    rest = key[len(keys.root) :]
    for kind, pattern in _PATTERNS.items():
        if pattern.fullmatch(rest):
            return kind
    return KeyKind.UNKNOWN


# orjson was measured against msgpack (`bench/serialization.py`, numbers in docs/cache.md): orjson
# round-trips a product ~1.8x and a 20-item page ~2.2x faster; msgpack is ~12% smaller. Speed on the
# hot path and bytes an operator can read in `redis-cli` win. The format's version is in the key
# (keys.SCHEMA_VERSION), not in the bytes.


class SerializationError(ValueError):
    """Cached bytes could not be decoded; the entry is treated as a miss."""


def dumps(value: Any) -> bytes:
    """Serialize plain data (dicts, lists, str, int, bool, None, datetimes as ISO)."""
    return orjson.dumps(value, option=orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC)


def loads(data: bytes) -> Any:
    """Deserialize bytes written by dumps()."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise SerializationError(str(error)) from None


class TtlPolicy:
    """Returns TTLs spread uniformly within ±jitter of the base value."""

    def __init__(self, jitter: float, rng: random.Random | None = None) -> None:
        if not 0 <= jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        self.jitter = jitter
        self._rng = rng or random.Random()

    def seconds(self, base_s: int) -> int:
        """A TTL in whole seconds near base_s (never below 1)."""
        spread = base_s * self.jitter
        return max(1, round(base_s + self._rng.uniform(-spread, spread)))
