"""The cache's store: the operations the service runs on Redis, their errors, and what metrics attach to.

One implementation on redis-py (fakeredis in the unit tests). Each Redis call runs in one guard
(`_guard`) under its operation's name: the breaker, Redis errors mapped to CacheError, the timing.
A versioned entry holds a product's body with the version it was read at; no write replaces a newer
one (scripts.py). On RedisCluster pipelines are non-transactional (split per node); SCAN visits every primary.
"""

from __future__ import annotations

import functools
import logging
import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Protocol, TypeVar, cast

from redis.cluster import RedisCluster
from redis.exceptions import RedisError

from jollyjet.cache import scripts
from jollyjet.cache.client import REDIS_ERRORS, DeferredCluster, RedisClient

if TYPE_CHECKING:
    from jollyjet.cache.fence import CircuitBreaker
    from jollyjet.cache.keys import ProductKeys

log = logging.getLogger(__name__)
T = TypeVar("T")
P = ParamSpec("P")
# Told of every store operation: (operation, seconds, succeeded). The metrics' hook.
CallObserver = Callable[[str, float, bool], None]


class CacheError(Exception):
    """Redis failed or timed out; callers fall back to the database."""


class CacheUnavailable(CacheError):
    """The circuit breaker is open (or a new Redis server is settling): Redis was not even tried."""


class CacheServerSettling(RedisError):
    """The server is current but others may still use the one it replaced (epoch.py); no failure, so no retry."""


@dataclass(frozen=True)
class VersionedEntry:
    """A cached entry: its version and payload (None: a tombstone or a cached absence).

    pending: a write of the product began after it was stored (never served); settled: its write
    finished invalidating lists (scripts.MARK_SETTLED)."""

    version: int
    payload: bytes | None
    pending: bool = False
    settled: bool = False

    @property
    def is_tombstone(self) -> bool:
        return self.payload is None


def _entry(fields: Sequence[Any]) -> VersionedEntry | None:
    version, payload, pending, settled = fields
    if version is None:
        return None
    return VersionedEntry(int(version), payload, pending=pending is not None, settled=settled is not None)


def _guarded(method: Callable[Concatenate[CacheBackend, P], T]) -> Callable[Concatenate[CacheBackend, P], T]:
    """The operation goes through the store's guard under its own name."""

    @functools.wraps(method)
    def guarded(self: CacheBackend, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._guard(method.__name__, functools.partial(method, self, *args, **kwargs))

    return guarded


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class CacheBackend:
    """The store: each public operation runs through the breaker, may raise CacheError, and is timed."""

    def __init__(self, client: RedisClient, breaker: CircuitBreaker, observe: CallObserver | None = None) -> None:
        self.client = client
        self.breaker = breaker
        self.observe = observe
        # Every public upper-case name of scripts.py is a script (the _NAMES are fragments of them).
        public = {name: text for name, text in vars(scripts).items() if name.isupper() and not name.startswith("_")}
        self._scripts = {name: client.register_script(text) for name, text in public.items()}

    def _run(self, script: str, keys: Sequence[Any], args: Sequence[Any] = ()) -> Any:
        return self._scripts[script](keys=list(keys), args=list(args))

    def _guard(self, operation: str, call: Callable[[], T]) -> T:
        if not self.breaker.allow():
            raise CacheUnavailable("circuit breaker open")
        started = time.perf_counter()
        try:
            result = call()
        except CacheServerSettling as error:
            # Unusable for a moment, but nothing failed: the breaker is not told (epoch.py).
            self.breaker.record_neither()
            raise CacheUnavailable(str(error)) from error
        except REDIS_ERRORS as error:
            self._observed(operation, started, ok=False)
            self.breaker.record_failure()
            # The error text of redis-py never contains the password; the URL is not logged.
            log.warning("redis call failed: %s: %s", type(error).__name__, error)
            raise CacheError(str(error)) from error
        self._observed(operation, started, ok=True)
        self.breaker.record_success()
        return result

    def _observed(self, operation: str, started: float, ok: bool) -> None:
        if self.observe is not None:
            self.observe(operation, time.perf_counter() - started, ok)

    def _pipelined(self, operation: str, items: Sequence[T], command: Callable[[Any, T], object]) -> list[Any]:
        """command(pipe, item) for each item, in one guarded round trip; no items: none, and no breaker trial."""
        if not items:
            return []

        def run() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for item in items:
                command(pipe, item)
            return list(pipe.execute())

        return self._guard(operation, run)

    @_guarded
    def get(self, key: str) -> bytes | None:
        """Value of key, or None."""
        return self.client.get(key)  # type: ignore[return-value]  # decode_responses=False

    def delete(self, *keys: str) -> int:
        """Remove keys (non-blocking UNLINK); returns how many existed."""
        return int(self._guard("delete", lambda: self.client.unlink(*keys))) if keys else 0

    def ttl_many(self, keys: Sequence[str]) -> list[int | None]:
        """Remaining TTLs in seconds, in one round trip: None where a key is missing, -1 where it has none."""
        found = self._pipelined("ttl_many", keys, lambda pipe, key: pipe.ttl(key))
        return [None if int(t) == -2 else int(t) for t in found]

    @_guarded
    def expire(self, key: str, ttl_s: int) -> bool:
        """Give an existing key a TTL in seconds; False when the key is missing."""
        return bool(self.client.expire(key, ttl_s))

    @_guarded
    def ping(self) -> bool:
        """True when Redis answers."""
        return bool(self.client.ping())

    def scan(self, pattern: str, batch_size: int) -> Iterator[list[str]]:
        """Keys matching pattern, in batches (SCAN, never KEYS); each SCAN call is guarded on its own."""
        client: Any = self.client
        if isinstance(client, DeferredCluster):
            client = self._guard("scan", client.cluster)
        if not isinstance(client, RedisCluster):
            yield from self._scan_node(lambda cursor: client.scan(cursor=cursor, match=pattern, count=batch_size))
            return
        # Each primary holds its own keys and its own cursor: walk them one after another.
        for node in self._guard("scan", client.get_primaries):

            def scan_node(cursor: int, node: Any = node) -> tuple[int, list[Any]]:
                # The cluster client answers ({node name: next cursor}, keys).
                cursors, found = client.scan(cursor=cursor, match=pattern, count=batch_size, target_nodes=node)
                return int(cast(dict[str, int], cursors)[node.name]), found

            yield from self._scan_node(scan_node)

    def _scan_node(self, scan_step: Callable[[int], tuple[int, list[Any]]]) -> Iterator[list[str]]:
        cursor = 0
        while True:
            cursor, found = self._guard("scan", functools.partial(scan_step, cursor))
            if found:
                yield [_text(k) for k in found]
            if int(cursor) == 0:
                return

    @_guarded
    def get_versioned(self, key: str) -> VersionedEntry | None:
        """The versioned entry at key, or None."""
        return _entry(self.client.hmget(key, "v", "d", "p", "s"))

    def get_versioned_many(self, keys: Sequence[str]) -> list[VersionedEntry | None]:
        """Versioned entries of many keys in one round trip."""
        found = self._pipelined("get_versioned_many", keys, lambda pipe, key: pipe.hmget(key, "v", "d", "p", "s"))
        return [_entry(fields) for fields in found]

    @_guarded
    def mark_write(
        self, product: ProductKeys | None, writes_key: str, generation_key: str, token: str, ttl_ms: int
    ) -> None:
        """Before a write is sent to MongoDB: mark it in flight for the product (None for a create) and the catalog."""
        # Two calls: the product's keys and the catalog's live in different cluster slots.
        if product is not None:
            self._run("MARK_PRODUCT_WRITE", [product.entry, product.lease, product.pending], [token, ttl_ms])
        self._run("MARK_CATALOG_WRITE", [writes_key, generation_key], [token, ttl_ms])

    @_guarded
    def abandon_write(self, product: ProductKeys | None, writes_key: str, generation_key: str, token: str) -> None:
        """A marked write that certainly changed nothing: drop its marks."""
        if product is not None:
            self._run("DROP_PRODUCT_MARK", [product.entry, product.pending], [token])
        self._run("FINISH_CATALOG_WRITE", [writes_key, generation_key], [token, "0"])

    @_guarded
    def swap_versioned(
        self, key: str, lease_key: str, pending_key: str, payload: bytes, version: int, ttl_s: int, token: str
    ) -> tuple[bool, bytes | None]:
        """The write-through of a marked write (token '' for a create): landed, and the settled before-image."""
        landed, before = self._run("SWAP_VERSIONED", [key, lease_key, pending_key], [version, payload, ttl_s, token])
        return bool(landed), before or None

    @_guarded
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
        """Fill after a miss: lands only under our lease, with no write in flight and nothing newer cached."""
        args = [token, version, payload, ttl_s, "1" if settled else "0"]
        return bool(self._run("FILL_VERSIONED", [key, lease_key, pending_key], args))

    @_guarded
    def fill_absent(self, key: str, lease_key: str, pending_key: str, token: str, ttl_s: int) -> bool:
        """Fill after a miss that found no product in MongoDB, under the same conditions as fill_versioned."""
        return bool(self._run("FILL_ABSENT", [key, lease_key, pending_key], [token, ttl_s]))

    @_guarded
    def mark_settled(self, key: str, version: int) -> bool:
        """The write of `version` finished its invalidation: its entry may now be a before-image."""
        return bool(self._run("MARK_SETTLED", [key], [version]))

    @_guarded
    def tombstone(self, key: str, lease_key: str, pending_key: str, version: int, ttl_s: int, token: str = "") -> bool:
        """Replace the entry by a tombstone at version (unless newer); revoke leases; finish the write's mark."""
        return bool(self._run("TOMBSTONE", [key, lease_key, pending_key], [version, ttl_s, token]))

    @_guarded
    def evict_versioned(self, key: str, lease_key: str, version: int) -> bool:
        """Remove the entry only while it still holds exactly version; always revoke leases."""
        return bool(self._run("EVICT_VERSIONED", [key, lease_key], [version]))

    @_guarded
    def get_generation(self, key: str) -> int:
        """Current generation (initialized from the server clock when missing)."""
        return int(self._run("GET_GENERATION", [key]))

    @_guarded
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
        """Register the filters; the generations, and the result cached under them or None (one round trip)."""
        keys = [generation_key, registry_key, writes_key, *filter_keys]
        result, *generations = self._run("READ_FILTERED", keys, [member, horizon_ms, result_prefix, query_hash])
        return [int(g) for g in generations], result  # a Lua false arrives as None

    @_guarded
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
        keys = [generation_key, registry_key, key, *filter_keys]
        args = [member, horizon_ms, payload, ttl_s, *(str(g) for g in generations)]
        return bool(self._run("FILL_FILTERED", keys, args))

    @_guarded
    def live_filters(self, registry_key: str) -> list[str]:
        """The registered filters (lapsed registrations are dropped)."""
        return [_text(m) for m in self._run("LIVE_FILTERS", [registry_key])]

    @_guarded
    def finish_catalog_write(
        self, writes_key: str, generation_key: str, filter_keys: Sequence[str], token: str, bump_global: bool
    ) -> int:
        """A write's list invalidation: bump the generations that exist, drop its mark; returns how many moved."""
        keys = [writes_key, generation_key, *filter_keys]
        return int(self._run("FINISH_CATALOG_WRITE", keys, [token, "1" if bump_global else "0"]))

    def incr_scores(self, key: str, increments: Mapping[str, float]) -> None:
        """Add to members' scores in one round trip (ZINCRBY)."""
        self._pipelined("incr_scores", list(increments.items()), lambda pipe, item: pipe.zincrby(key, item[1], item[0]))

    @_guarded
    def top_members(self, key: str, start: int, stop: int) -> list[str]:
        """Members ranked start..stop (inclusive, highest score first)."""
        members: list[bytes] = self.client.zrevrange(key, start, stop)  # type: ignore[assignment]
        return [_text(m) for m in members]

    @_guarded
    def trim_ranked(self, key: str, keep: int) -> int:
        """Keep only the keep highest-scored members; returns how many were removed."""
        return int(self.client.zremrangebyrank(key, 0, -(keep + 1)))  # ranks count from the lowest score

    def remove_members(self, key: str, members: Sequence[str]) -> int:
        """Remove members; returns how many existed."""
        return int(self._guard("remove_members", lambda: self.client.zrem(key, *members))) if members else 0

    @_guarded
    def acquire_lock(self, key: str, ttl_ms: int) -> str | None:
        """Take a short lock (also a product's fill lease); returns its token or None if held."""
        token = secrets.token_hex(8)
        return token if self.client.set(key, token, nx=True, px=ttl_ms) else None

    def acquire_locks(self, keys: Sequence[str], ttl_ms: int) -> list[str | None]:
        """acquire_lock of many keys in one round trip: each token, or None where held."""
        tokens = [secrets.token_hex(8) for _ in keys]
        pairs = list(zip(keys, tokens, strict=True))
        acquired = self._pipelined("acquire_locks", pairs, lambda pipe, pair: pipe.set(*pair, nx=True, px=ttl_ms))
        return [token if ok else None for token, ok in zip(tokens, acquired, strict=True)]

    @_guarded
    def release_lock(self, key: str, token: str) -> None:
        """Release the lock if it is still ours."""
        self._run("RELEASE_LOCK", [key], [token])


class CacheEvents(Protocol):
    """Receives each outcome of the catalog cache (the metrics' other hook); must be cheap and never raise.

    Per cached read exactly one of hit, wait_hit (served by another request's fill), miss (served from the
    database), bypass (Redis failed or the breaker is open). Also db_read, fill, fill_rejected, write_through,
    write_refused (the version guard kept a newer entry), write_failure, fenced (sent to the database by the
    recovery fence). Kinds: product, list, count, categories."""

    def emit(self, event: str, kind: str) -> None:
        """Record one event."""
