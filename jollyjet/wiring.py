"""Builds the object graph (repositories, cache, service) from settings. Used by the app and the worker."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
from flask_caching import Cache

from jollyjet.cache.backend import CacheBackend
from jollyjet.cache.breaker import CircuitBreaker
from jollyjet.cache.client import build_redis_client
from jollyjet.cache.events import CacheEvents, EventCounter
from jollyjet.cache.keys import CacheKeys
from jollyjet.cache.popularity import PopularityTracker
from jollyjet.cache.redis_backend import RedisCacheBackend
from jollyjet.cache.repair_log import RepairLog
from jollyjet.cache.ttl import TtlPolicy
from jollyjet.products.cached_repository import CachedProductRepository, CachePolicy
from jollyjet.products.category_memo import CategoryMemo
from jollyjet.products.mongo_repository import MongoProductRepository
from jollyjet.products.repository import ProductRepository
from jollyjet.products.service import ProductService
from jollyjet.settings import Settings

CATEGORY_MEMO_TTL_S = 30


@dataclass
class Services:
    """Everything a request or a task needs, built once per process."""

    settings: Settings
    products: ProductService
    repository: ProductRepository
    mongo: MongoProductRepository
    cached: CachedProductRepository | None
    cache: CacheBackend | None
    redis: redis.Redis | None
    breaker: CircuitBreaker | None
    keys: CacheKeys
    events: CacheEvents
    repairs: RepairLog
    popularity: PopularityTracker | None = None
    category_memo: CategoryMemo | None = None


def cache_policy(settings: Settings) -> CachePolicy:
    """The cached repository's TTLs and timings."""
    return CachePolicy(
        product_ttl_s=settings.cache_product_ttl_s,
        list_ttl_s=settings.cache_list_ttl_s,
        tombstone_ttl_s=settings.cache_tombstone_ttl_s,
        lease_ttl_ms=settings.cache_lease_ttl_ms,
        fill_wait_ms=settings.cache_fill_wait_ms,
    )


def flask_cache_config(settings: Settings, client: redis.Redis | None, keys: CacheKeys) -> dict[str, Any]:
    """Flask-Caching on the same Redis client (and pool) as the rest of the cache."""
    if client is None:
        # In-process stand-in for unit tests (an injected memory backend, no Redis client).
        return {"CACHE_TYPE": "SimpleCache", "CACHE_DEFAULT_TIMEOUT": CATEGORY_MEMO_TTL_S}
    return {
        "CACHE_TYPE": "RedisCache",
        "CACHE_REDIS_HOST": client,  # cachelib accepts a ready client instead of a host name
        "CACHE_KEY_PREFIX": keys.flask_cache_prefix,
        "CACHE_DEFAULT_TIMEOUT": CATEGORY_MEMO_TTL_S,
    }


def build_services(
    settings: Settings,
    flask_cache: Cache,
    cache_backend: CacheBackend | None = None,
    events: CacheEvents | None = None,
) -> Services:
    """Wire repositories, cache and service. cache_backend overrides the Redis one (unit tests)."""
    keys = CacheKeys(settings.cache_key_prefix)
    events = events or EventCounter()
    repairs = RepairLog()
    mongo = MongoProductRepository()
    client: redis.Redis | None = None
    breaker: CircuitBreaker | None = None
    cache: CacheBackend | None = None
    if settings.cache_enabled:
        breaker = CircuitBreaker(settings.breaker_failure_threshold, settings.breaker_cooldown_s)
        if cache_backend is None:
            client = build_redis_client(settings)
            cache = RedisCacheBackend(client, breaker)
        else:
            cache = cache_backend
    repository: ProductRepository = mongo
    cached: CachedProductRepository | None = None
    memo: CategoryMemo | None = None
    popularity: PopularityTracker | None = None
    if cache is not None:
        popularity = PopularityTracker(cache, keys, settings.popularity_sample_rate)
        cached = CachedProductRepository(
            mongo,
            cache,
            keys,
            TtlPolicy(settings.cache_ttl_jitter),
            cache_policy(settings),
            repairs,
            events,
            popularity,
        )
        repository = cached
        memo = CategoryMemo(flask_cache, breaker, CATEGORY_MEMO_TTL_S)
    service = ProductService(
        repository,
        categories_memo=memo.get_or_compute if memo else None,
        on_change=(memo.invalidate,) if memo else (),
    )
    return Services(
        settings, service, repository, mongo, cached, cache, client, breaker, keys, events, repairs, popularity, memo
    )
