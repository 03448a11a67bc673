"""In-process CacheBackend with the same semantics as Redis, for unit tests."""

from __future__ import annotations

import fnmatch
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from jollyjet.cache.backend import VersionedEntry


@dataclass
class _Stored:
    value: bytes | VersionedEntry | dict[str, float]
    expires_at: float | None
    settled: bool = False  # a versioned entry whose write finished invalidating (MARK_SETTLED)


class MemoryCacheBackend:
    """A dict with expiry behind one lock; every compound operation is atomic like a Lua script."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._data: dict[str, _Stored] = {}
        self._lock = threading.RLock()
        self._generation_seed = int(time.time() * 1_000_000)

    # --- helpers ----------------------------------------------------------------
    def _live(self, key: str) -> _Stored | None:
        slot = self._data.get(key)
        if slot is not None and slot.expires_at is not None and slot.expires_at <= self._clock():
            del self._data[key]
            return None
        return slot

    def _put(self, key: str, value: bytes | VersionedEntry | dict[str, float], ttl_s: float | None) -> None:
        expires = None if ttl_s is None else self._clock() + ttl_s
        self._data[key] = _Stored(value, expires)

    def _versioned(self, key: str) -> VersionedEntry | None:
        slot = self._live(key)
        return slot.value if slot is not None and isinstance(slot.value, VersionedEntry) else None

    def _bytes(self, key: str) -> bytes | None:
        slot = self._live(key)
        return slot.value if slot is not None and isinstance(slot.value, bytes) else None

    def _newer_cached(self, key: str, version: int) -> bool:
        current = self._versioned(key)
        return current is not None and current.version > version

    # --- plain keys -------------------------------------------------------------
    def get(self, key: str) -> bytes | None:
        with self._lock:
            return self._bytes(key)

    def set(self, key: str, value: bytes, ttl_s: int) -> None:
        with self._lock:
            self._put(key, value, ttl_s)

    def set_without_ttl(self, key: str, value: bytes) -> None:
        """Store a key with no TTL (tests plant such keys for the cleanup job)."""
        with self._lock:
            self._put(key, value, None)

    def delete(self, *keys: str) -> int:
        with self._lock:
            removed = 0
            for key in keys:
                if self._live(key) is not None:
                    del self._data[key]
                    removed += 1
            return removed

    def exists(self, key: str) -> bool:
        with self._lock:
            return self._live(key) is not None

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        with self._lock:
            return [self._bytes(key) for key in keys]

    def set_many(self, items: Mapping[str, bytes], ttl_s: int) -> None:
        with self._lock:
            for key, value in items.items():
                self._put(key, value, ttl_s)

    def ttl(self, key: str) -> int | None:
        with self._lock:
            slot = self._live(key)
            if slot is None:
                return None
            if slot.expires_at is None:
                return -1
            return max(0, round(slot.expires_at - self._clock()))

    def ttl_many(self, keys: Sequence[str]) -> list[int | None]:
        with self._lock:
            return [self.ttl(key) for key in keys]

    def expire(self, key: str, ttl_s: int) -> bool:
        with self._lock:
            slot = self._live(key)
            if slot is None:
                return False
            slot.expires_at = self._clock() + ttl_s
            return True

    def scan(self, pattern: str, batch_size: int) -> Iterator[list[str]]:
        with self._lock:
            keys = [k for k in list(self._data) if self._live(k) is not None and fnmatch.fnmatchcase(k, pattern)]
        for start in range(0, len(keys), batch_size):
            yield keys[start : start + batch_size]

    def ping(self) -> bool:
        return True

    # --- versioned entries --------------------------------------------------------
    def get_versioned(self, key: str) -> VersionedEntry | None:
        with self._lock:
            return self._versioned(key)

    def get_versioned_many(self, keys: Sequence[str]) -> list[VersionedEntry | None]:
        with self._lock:
            return [self._versioned(key) for key in keys]

    def set_versioned(self, key: str, lease_key: str, payload: bytes, version: int, ttl_s: int) -> bool:
        with self._lock:
            self._data.pop(lease_key, None)
            if self._newer_cached(key, version):
                return False
            self._put(key, VersionedEntry(version, payload), ttl_s)
            return True

    def fill_versioned(
        self, key: str, lease_key: str, token: str, payload: bytes, version: int, ttl_s: int, settled: bool = False
    ) -> bool:
        with self._lock:
            if self._bytes(lease_key) != token.encode():
                return False
            self._data.pop(lease_key, None)
            if self._newer_cached(key, version):
                return False
            self._put(key, VersionedEntry(version, payload), ttl_s)
            self._data[key].settled = settled
            return True

    def tombstone(self, key: str, lease_key: str, version: int, ttl_s: int) -> bool:
        with self._lock:
            self._data.pop(lease_key, None)
            if self._newer_cached(key, version):
                return False
            self._put(key, VersionedEntry(version, None), ttl_s)
            return True

    def swap_versioned(
        self, key: str, lease_key: str, payload: bytes, version: int, ttl_s: int
    ) -> tuple[bool, bytes | None]:
        with self._lock:
            self._data.pop(lease_key, None)
            current = self._versioned(key)
            if current is not None and current.version > version:
                return False, None
            slot = self._live(key)
            settled = slot is not None and slot.settled
            before = current.payload if current is not None and settled and current.version == version - 1 else None
            self._put(key, VersionedEntry(version, payload), ttl_s)
            return True, before

    def mark_settled(self, key: str, version: int) -> bool:
        with self._lock:
            slot = self._live(key)
            if slot is None or not isinstance(slot.value, VersionedEntry) or slot.value.version != version:
                return False
            slot.settled = True
            return True

    def evict_versioned(self, key: str, lease_key: str, version: int) -> bool:
        with self._lock:
            self._data.pop(lease_key, None)
            current = self._versioned(key)
            if current is None or current.version != version:
                return False
            del self._data[key]
            return True

    # --- generations --------------------------------------------------------------
    def _generation_locked(self, key: str, ttl_s: float | None = None) -> int:
        """The generation; a missing one restarts from the clock (filter generations with a TTL)."""
        current = self._bytes(key)
        if current is None:
            seed = max(self._generation_seed, int(time.time() * 1_000_000))
            self._put(key, str(seed).encode(), ttl_s)
            return seed
        return int(current)

    def get_generation(self, key: str) -> int:
        with self._lock:
            return self._generation_locked(key)

    def bump_generation(self, key: str) -> int:
        with self._lock:
            value = self._generation_locked(key) + 1
            self._put(key, str(value).encode(), None)
            return value

    def fill_generational(self, generation_key: str, generation: int, key: str, payload: bytes, ttl_s: int) -> bool:
        with self._lock:
            if self._bytes(generation_key) != str(generation).encode():
                return False
            self._put(key, payload, ttl_s)
            return True

    # --- filter generations ---------------------------------------------------------
    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def read_filtered(
        self,
        generation_key: str,
        registry_key: str,
        filter_keys: Sequence[str],
        member: str,
        horizon_ms: int,
        result_prefix: str,
        query_hash: str,
    ) -> tuple[list[int], bytes | None]:
        with self._lock:
            if not self._ranked(registry_key) and self._bytes(generation_key) is not None:
                # As the Lua script: a missing registry moves the global generation forward.
                self._put(generation_key, str(self._generation_locked(generation_key) + 1).encode(), None)
            values = [self._generation_locked(generation_key)]
            values += [self._generation_locked(k, 2 * horizon_ms / 1000) for k in filter_keys]
            registry = self._ranked(registry_key, create=True)
            registry[member] = max(registry.get(member, 0), self._now_ms() + horizon_ms)
            key = f"{result_prefix}{values[0]}:{query_hash}" + "".join(f".{g}" for g in values[1:])
            return values, self._bytes(key)

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
        with self._lock:
            current = [self._bytes(k) for k in (generation_key, *filter_keys)]
            if current != [str(g).encode() for g in generations]:
                return False
            registry = self._ranked(registry_key, create=True)
            now = self._now_ms()
            if registry.get(member, -1) < now:
                return False
            registry[member] = max(registry[member], now + horizon_ms)
            for k in filter_keys:
                self._put(k, self._bytes(k) or b"0", 2 * horizon_ms / 1000)
            self._put(key, payload, ttl_s)
            return True

    def live_filters(self, registry_key: str) -> list[str]:
        with self._lock:
            registry = self._ranked(registry_key)
            now = self._now_ms()
            for member in [m for m, expiry in registry.items() if expiry < now]:
                del registry[member]
            return sorted(registry)

    def bump_existing(self, keys: Sequence[str]) -> int:
        with self._lock:
            bumped = 0
            for key in keys:
                slot = self._live(key)
                if slot is not None:
                    slot.value = str(int(self._bytes(key) or b"0") + 1).encode()
                    bumped += 1
            return bumped

    # --- ranked sets ----------------------------------------------------------------
    def _ranked(self, key: str, create: bool = False) -> dict[str, float]:
        slot = self._live(key)
        if slot is None:
            scores: dict[str, float] = {}
            if create:
                self._put(key, scores, None)
            return scores
        if not isinstance(slot.value, dict):
            raise TypeError(f"{key} does not hold a ranked set")
        return slot.value

    def _drop_if_empty(self, key: str) -> None:
        # Redis deletes a sorted set when its last member goes.
        slot = self._data.get(key)
        if slot is not None and slot.value == {}:
            del self._data[key]

    def _by_rank(self, key: str) -> list[str]:
        scores = self._ranked(key)
        # Redis orders equal scores by member; ZREVRANGE reverses both.
        return [m for m, _ in sorted(scores.items(), key=lambda item: (item[1], item[0]), reverse=True)]

    def incr_scores(self, key: str, increments: Mapping[str, float]) -> None:
        with self._lock:
            scores = self._ranked(key, create=True)
            for member, amount in increments.items():
                scores[member] = scores.get(member, 0.0) + amount

    def top_members(self, key: str, start: int, stop: int) -> list[str]:
        with self._lock:
            ranked = self._by_rank(key)
            return ranked[start : None if stop == -1 else stop + 1]

    def trim_ranked(self, key: str, keep: int) -> int:
        with self._lock:
            ranked = self._by_rank(key)
            scores = self._ranked(key)
            for member in ranked[keep:]:
                del scores[member]
            self._drop_if_empty(key)
            return max(0, len(ranked) - keep)

    def remove_members(self, key: str, members: Sequence[str]) -> int:
        with self._lock:
            scores = self._ranked(key)
            removed = sum(1 for m in members if scores.pop(m, None) is not None)
            self._drop_if_empty(key)
            return removed

    # --- locks --------------------------------------------------------------------
    def acquire_lock(self, key: str, ttl_ms: int) -> str | None:
        with self._lock:
            if self._live(key) is not None:
                return None
            token = secrets.token_hex(8)
            self._put(key, token.encode(), ttl_ms / 1000)
            return token

    def release_lock(self, key: str, token: str) -> None:
        with self._lock:
            if self._bytes(key) == token.encode():
                del self._data[key]
