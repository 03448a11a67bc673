"""The one place cache key names are built, parsed back and given TTLs; and the read counts kept under them.

Keys are built only from validated values (ObjectId hex strings, hashes of a normalized query),
never raw client text. Hash tags keep the keys one Lua script touches in one Redis Cluster slot:
a product's keys share `{<id>}`; list, count and category entries share `{products}` with the
generations that guard them (all list caches on one node: small and short-lived, and a generation
per shard would make invalidation a fan-out).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from jollyjet.cache.store import CacheBackend, CacheError

log = logging.getLogger(__name__)
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
        """`<prefix>:<generation>:<query hash>.<filter generation>...`, as scripts.READ_FILTERED builds it."""
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
    return hashlib.blake2b(query_member(normalized_query).encode(), digest_size=12).hexdigest()


def query_member(normalized_query: dict[str, Any]) -> str:
    """The canonical JSON of a normalized query (a sorted-set member naming it)."""
    return orjson.dumps(normalized_query, option=orjson.OPT_SORT_KEYS).decode()


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
_PATTERNS = {  # each kind by the tail of its key (after `<prefix>:v<schema>`)
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
    return next((kind for kind, pattern in _PATTERNS.items() if pattern.fullmatch(rest)), KeyKind.UNKNOWN)


def product_id_from_entry_key(key: str) -> str | None:
    """The product id inside an entry key (any schema), or None for any other key."""
    match = _PATTERNS[KeyKind.PRODUCT].search(key)
    return match.group(1) if match else None


def survives_new_epoch(key: str) -> bool:
    """Job locks, beat claims and read counts: nothing in them is served, so a new cache epoch keeps them."""
    return any(_PATTERNS[kind].search(key) for kind in (KeyKind.JOB_LOCK, KeyKind.BEAT_CLAIM, KeyKind.POPULARITY))


def schema_of(key: str) -> int | None:
    """The schema version a key was written under, or None if it is not one of ours."""
    match = _SCHEMA.match(key)
    return int(match.group(1)) if match else None


def generation_of(key: str) -> int | None:
    """The generation inside a list/count/categories result key (or its fill lock), else None."""
    match = _PATTERNS[KeyKind.RESULT].search(key) or _PATTERNS[KeyKind.RESULT_LOCK].search(key)
    return int(match.group(1)) if match else None


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


class PopularityTracker:
    """Counts reads per process and sends them to the popular_* sorted sets; failures are ignored.

    Reads are sampled (`sample_rate`, weighted by 1/sample_rate) and a daemon thread per process
    flushes them every `flush_interval_s` (0: at once), one pipeline per sorted set, off every
    request's round trips. Counts lost with a process are harmless: popularity only guides warming.
    """

    def __init__(
        self,
        cache: CacheBackend,
        keys: CacheKeys,
        sample_rate: float,
        rng: random.Random | None = None,
        flush_interval_s: float = 0.0,
    ) -> None:
        if not 0 < sample_rate <= 1:
            raise ValueError("sample_rate must be in (0, 1]")
        self.cache = cache
        self.keys = keys
        self.sample_rate = sample_rate
        self.flush_interval_s = flush_interval_s
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._products: Counter[str] = Counter()
        self._queries: Counter[str] = Counter()
        self._flusher_pid: int | None = None  # the process whose flush thread runs (threads do not survive fork)

    def _sampled(self) -> bool:
        return self.sample_rate >= 1 or self._rng.random() < self.sample_rate

    def product_read(self, product_id: str) -> None:
        """Count one read of a product (an ObjectId string, already validated)."""
        if self._sampled():
            self._count(self._products, product_id)

    def query_read(self, normalized_query: dict[str, Any]) -> None:
        """Count one read of a list query; pages of one query count together (warming fills page 1)."""
        if self._sampled():
            self._count(self._queries, query_member({**normalized_query, "page": 1}))

    def _count(self, counts: Counter[str], member: str) -> None:
        with self._lock:
            counts[member] += 1
        if self.flush_interval_s <= 0:
            self.flush()
        elif self._flusher_pid != os.getpid():
            with self._lock:
                if self._flusher_pid == os.getpid():
                    return
                self._flusher_pid = os.getpid()
            threading.Thread(target=self._flush_forever, name="popularity-flush", daemon=True).start()

    def _flush_forever(self) -> None:
        while True:
            time.sleep(self.flush_interval_s)
            try:
                self.flush()
            except Exception:  # the thread must outlive any surprise; the next batch retries nothing
                log.exception("popularity flush failed")

    def flush(self) -> None:
        """Send the counts gathered so far (one pipeline per sorted set); dropped if Redis fails."""
        with self._lock:
            products, self._products = self._products, Counter()
            queries, self._queries = self._queries, Counter()
        weight = 1 / self.sample_rate
        with contextlib.suppress(CacheError):
            if products:
                self.cache.incr_scores(self.keys.popular_products, {m: n * weight for m, n in products.items()})
            if queries:
                self.cache.incr_scores(self.keys.popular_queries, {m: n * weight for m, n in queries.items()})

    def top_products(self, n: int) -> list[str]:
        """The n most-read product ids, most-read first (this process's unsent counts included)."""
        self.flush()
        return self.cache.top_members(self.keys.popular_products, 0, n - 1) if n > 0 else []

    def top_queries(self, n: int) -> list[dict[str, Any]]:
        """The n most-read list queries (page 1), most-read first; unreadable members are skipped."""
        if n <= 0:
            return []
        self.flush()
        queries = []
        for member in self.cache.top_members(self.keys.popular_queries, 0, n - 1):
            try:
                value = orjson.loads(member)
            except orjson.JSONDecodeError:
                log.warning("skipping an unreadable popular-query member")
                continue
            if isinstance(value, dict):
                queries.append(value)
        return queries
