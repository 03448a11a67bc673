"""CacheBackend on redis-py, guarded by the circuit breaker."""

from __future__ import annotations

import logging
import secrets
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar, cast

from redis.cluster import RedisCluster

from jollyjet.cache import scripts
from jollyjet.cache.backend import CacheError, CacheUnavailable, VersionedEntry
from jollyjet.cache.breaker import CircuitBreaker
from jollyjet.cache.client import REDIS_ERRORS, RedisClient
from jollyjet.cache.deferred_cluster import DeferredCluster
from jollyjet.cache.epoch import CacheServerSettling
from jollyjet.cache.keys import ProductKeys

log = logging.getLogger(__name__)
T = TypeVar("T")
# Told of every Redis call: (backend operation, seconds, succeeded). The metrics' hook.
CallObserver = Callable[[str, float, bool], None]


def _entry(fields: Sequence[Any]) -> VersionedEntry | None:
    version, payload, pending, settled = fields
    if version is None:
        return None
    return VersionedEntry(int(version), payload, pending=pending is not None, settled=settled is not None)


class RedisCacheBackend:
    """Every call goes through the breaker; Redis errors become CacheError.

    Works unchanged on a standalone/Sentinel client and on RedisCluster: each Lua script's
    keys share a hash tag (one slot); pipelines are non-transactional, which redis-py's
    cluster pipeline splits per node; SCAN visits every primary (see scan()).
    """

    def __init__(self, client: RedisClient, breaker: CircuitBreaker, observe: CallObserver | None = None) -> None:
        self.client = client
        self.breaker = breaker
        self.observe = observe
        self._fill_versioned = client.register_script(scripts.FILL_VERSIONED)
        self._tombstone = client.register_script(scripts.TOMBSTONE)
        self._evict_versioned = client.register_script(scripts.EVICT_VERSIONED)
        self._get_generation = client.register_script(scripts.GET_GENERATION)
        self._release_lock = client.register_script(scripts.RELEASE_LOCK)
        self._swap_versioned = client.register_script(scripts.SWAP_VERSIONED)
        self._mark_settled = client.register_script(scripts.MARK_SETTLED)
        self._read_filtered = client.register_script(scripts.READ_FILTERED)
        self._fill_filtered = client.register_script(scripts.FILL_FILTERED)
        self._live_filters = client.register_script(scripts.LIVE_FILTERS)
        self._fill_absent = client.register_script(scripts.FILL_ABSENT)
        self._mark_product_write = client.register_script(scripts.MARK_PRODUCT_WRITE)
        self._mark_catalog_write = client.register_script(scripts.MARK_CATALOG_WRITE)
        self._finish_catalog_write = client.register_script(scripts.FINISH_CATALOG_WRITE)
        self._drop_product_mark = client.register_script(scripts.DROP_PRODUCT_MARK)

    def _guard(self, call: Callable[[], T]) -> T:
        if not self.breaker.allow():
            raise CacheUnavailable("circuit breaker open")
        started = time.perf_counter()
        try:
            result = call()
        except CacheServerSettling as error:
            # A new Redis server waits for every process to leave the old one (epoch.py): the
            # cache is unusable for a moment, but nothing failed, so the breaker is not told.
            self.breaker.record_neither()
            raise CacheUnavailable(str(error)) from error
        except REDIS_ERRORS as error:
            self._observed(started, ok=False)
            self.breaker.record_failure()
            # The error text of redis-py never contains the password; the URL is not logged.
            log.warning("redis call failed: %s: %s", type(error).__name__, error)
            raise CacheError(str(error)) from error
        self._observed(started, ok=True)
        self.breaker.record_success()
        return result

    def _observed(self, started: float, ok: bool) -> None:
        if self.observe is not None:
            # The public method that called _guard names the operation (get, swap_versioned, …):
            # one label per backend operation, without threading a name through every call.
            operation = sys._getframe(2).f_code.co_name
            self.observe(operation, time.perf_counter() - started, ok)

    # --- plain keys -----------------------------------------------------------
    def get(self, key: str) -> bytes | None:
        return self._guard(lambda: self.client.get(key))  # type: ignore[return-value]  # decode_responses=False

    def set(self, key: str, value: bytes, ttl_s: int) -> None:
        self._guard(lambda: self.client.set(key, value, ex=ttl_s))

    def delete(self, *keys: str) -> int:
        if not keys:
            return 0
        return int(self._guard(lambda: self.client.unlink(*keys)))

    def exists(self, key: str) -> bool:
        return bool(self._guard(lambda: self.client.exists(key)))

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []

        def run() -> list[bytes | None]:
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.get(key)
            return pipe.execute()

        return self._guard(run)

    def ttl(self, key: str) -> int | None:
        remaining = int(self._guard(lambda: self.client.ttl(key)))
        return None if remaining == -2 else remaining

    def ttl_many(self, keys: Sequence[str]) -> list[int | None]:
        if not keys:
            return []

        def run() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.ttl(key)
            return pipe.execute()

        return [None if int(t) == -2 else int(t) for t in self._guard(run)]

    def expire(self, key: str, ttl_s: int) -> bool:
        return bool(self._guard(lambda: self.client.expire(key, ttl_s)))

    def scan(self, pattern: str, batch_size: int) -> Iterator[list[str]]:
        if isinstance(self.client, DeferredCluster):
            yield from self._scan_cluster(self._guard(self.client.cluster), pattern, batch_size)
            return
        if isinstance(self.client, RedisCluster):
            yield from self._scan_cluster(self.client, pattern, batch_size)
            return
        client = self.client
        cursor: int = 0
        while True:
            cursor, keys = self._guard(lambda c=cursor: client.scan(cursor=c, match=pattern, count=batch_size))  # type: ignore[misc]
            if keys:
                yield [k.decode() if isinstance(k, bytes) else k for k in keys]
            if cursor == 0:
                return

    def _scan_cluster(self, client: RedisCluster, pattern: str, batch_size: int) -> Iterator[list[str]]:
        # Each primary holds its own keys and its own cursor: walk them one after another.
        for node in self._guard(client.get_primaries):
            cursor: int = 0
            while True:
                # The cluster client answers ({node name: next cursor}, keys).
                cursors, keys = self._guard(
                    lambda c=cursor, n=node: client.scan(cursor=c, match=pattern, count=batch_size, target_nodes=n)  # type: ignore[misc]
                )
                cursor = int(cast(dict[str, int], cursors)[node.name])
                if keys:
                    yield [k.decode() if isinstance(k, bytes) else k for k in keys]
                if cursor == 0:
                    break

    def ping(self) -> bool:
        return bool(self._guard(self.client.ping))

    # --- versioned entries ----------------------------------------------------
    def get_versioned(self, key: str) -> VersionedEntry | None:
        return _entry(self._guard(lambda: self.client.hmget(key, "v", "d", "p", "s")))

    def get_versioned_many(self, keys: Sequence[str]) -> list[VersionedEntry | None]:
        if not keys:
            return []

        def run() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.hmget(key, "v", "d", "p", "s")
            return pipe.execute()

        return [_entry(fields) for fields in self._guard(run)]

    def mark_write(
        self, product: ProductKeys | None, writes_key: str, generation_key: str, token: str, ttl_ms: int
    ) -> None:
        # Two calls: the product's keys and the catalog's live in different cluster slots.
        if product is not None:
            keys = [product.entry, product.lease, product.pending]
            self._guard(lambda: self._mark_product_write(keys=keys, args=[token, ttl_ms]))
        self._guard(lambda: self._mark_catalog_write(keys=[writes_key, generation_key], args=[token, ttl_ms]))

    def abandon_write(self, product: ProductKeys | None, writes_key: str, generation_key: str, token: str) -> None:
        if product is not None:
            self._guard(lambda: self._drop_product_mark(keys=[product.entry, product.pending], args=[token]))
        self.finish_catalog_write(writes_key, generation_key, (), token, bump_global=False)

    def swap_versioned(
        self, key: str, lease_key: str, pending_key: str, payload: bytes, version: int, ttl_s: int, token: str
    ) -> tuple[bool, bytes | None]:
        landed, before = self._guard(
            lambda: self._swap_versioned(keys=[key, lease_key, pending_key], args=[version, payload, ttl_s, token])
        )
        return bool(landed), before or None

    def mark_settled(self, key: str, version: int) -> bool:
        return bool(self._guard(lambda: self._mark_settled(keys=[key], args=[version])))

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
        args: list[str | int | bytes] = [token, version, payload, ttl_s, "1" if settled else "0"]
        return bool(self._guard(lambda: self._fill_versioned(keys=[key, lease_key, pending_key], args=args)))

    def fill_absent(self, key: str, lease_key: str, pending_key: str, token: str, ttl_s: int) -> bool:
        return bool(self._guard(lambda: self._fill_absent(keys=[key, lease_key, pending_key], args=[token, ttl_s])))

    def tombstone(self, key: str, lease_key: str, pending_key: str, version: int, ttl_s: int, token: str = "") -> bool:
        keys = [key, lease_key, pending_key]
        return bool(self._guard(lambda: self._tombstone(keys=keys, args=[version, ttl_s, token])))

    def evict_versioned(self, key: str, lease_key: str, version: int) -> bool:
        return bool(self._guard(lambda: self._evict_versioned(keys=[key, lease_key], args=[version])))

    # --- generations ----------------------------------------------------------
    def get_generation(self, key: str) -> int:
        return int(self._guard(lambda: self._get_generation(keys=[key])))

    # --- filter generations -----------------------------------------------------
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
        keys = [generation_key, registry_key, writes_key, *filter_keys]
        args: list[str | int] = [member, horizon_ms, result_prefix, query_hash]
        result, *generations = self._guard(lambda: self._read_filtered(keys=keys, args=args))
        # A Lua false arrives as None.
        return [int(g) for g in generations], result

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
        keys = [generation_key, registry_key, key, *filter_keys]
        args: list[bytes | str | int] = [member, horizon_ms, payload, ttl_s, *(str(g) for g in generations)]
        return bool(self._guard(lambda: self._fill_filtered(keys=keys, args=args)))

    def live_filters(self, registry_key: str) -> list[str]:
        members = self._guard(lambda: self._live_filters(keys=[registry_key]))
        return [m.decode() if isinstance(m, bytes) else m for m in members]

    def finish_catalog_write(
        self, writes_key: str, generation_key: str, filter_keys: Sequence[str], token: str, bump_global: bool
    ) -> int:
        keys = [writes_key, generation_key, *filter_keys]
        args = [token, "1" if bump_global else "0"]
        return int(self._guard(lambda: self._finish_catalog_write(keys=keys, args=args)))

    # --- ranked sets ------------------------------------------------------------
    def incr_scores(self, key: str, increments: Mapping[str, float]) -> None:
        if not increments:
            return

        def run() -> None:
            pipe = self.client.pipeline(transaction=False)
            for member, amount in increments.items():
                pipe.zincrby(key, amount, member)
            pipe.execute()

        self._guard(run)

    def top_members(self, key: str, start: int, stop: int) -> list[str]:
        members: list[bytes] = self._guard(lambda: self.client.zrevrange(key, start, stop))  # type: ignore[arg-type,return-value]
        return [m.decode() for m in members]

    def trim_ranked(self, key: str, keep: int) -> int:
        # Ranks count from the lowest score: drop ranks 0 .. -(keep + 1).
        return int(self._guard(lambda: self.client.zremrangebyrank(key, 0, -(keep + 1))))

    def remove_members(self, key: str, members: Sequence[str]) -> int:
        if not members:
            return 0
        return int(self._guard(lambda: self.client.zrem(key, *members)))

    # --- locks ------------------------------------------------------------------
    def acquire_lock(self, key: str, ttl_ms: int) -> str | None:
        token = secrets.token_hex(8)
        acquired = self._guard(lambda: self.client.set(key, token, nx=True, px=ttl_ms))
        return token if acquired else None

    def acquire_locks(self, keys: Sequence[str], ttl_ms: int) -> list[str | None]:
        if not keys:
            return []
        tokens = [secrets.token_hex(8) for _ in keys]

        def run() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for key, token in zip(keys, tokens, strict=True):
                pipe.set(key, token, nx=True, px=ttl_ms)
            return pipe.execute()

        acquired = self._guard(run)
        return [token if ok else None for token, ok in zip(tokens, acquired, strict=True)]

    def release_lock(self, key: str, token: str) -> None:
        self._guard(lambda: self._release_lock(keys=[key], args=[token]))
