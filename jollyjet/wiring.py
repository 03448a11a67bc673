"""Builds Services (jollyjet/services.py) from settings. Used by the app factory, so by the web and the worker."""

from __future__ import annotations

from jollyjet.cache.client import CircuitBreaker, RedisClient, build_redis_client
from jollyjet.cache.epoch import CacheEpochGuard
from jollyjet.cache.events import CacheEvents, EventCounter, PopularityTracker, TeeEvents
from jollyjet.cache.fence import RepairFence, RepairLog
from jollyjet.cache.keys import CacheKeys, TtlPolicy
from jollyjet.cache.store import CacheBackend, CallObserver
from jollyjet.db import socket_timeout_ms
from jollyjet.ops.metrics import PrometheusEvents, redis_observer, shed_counter
from jollyjet.products.catalog import CachedProductRepository
from jollyjet.products.catalog_writes import CachePolicy
from jollyjet.products.repository import Bulkhead, MongoProductRepository
from jollyjet.services import CacheServices, Services
from jollyjet.settings import RedisTopology, Settings


def cache_policy(settings: Settings) -> CachePolicy:
    """The cached repository's TTLs and timings."""
    return CachePolicy(
        product_ttl_s=settings.cache_product_ttl_s,
        list_ttl_s=settings.cache_list_ttl_s,
        tombstone_ttl_s=settings.cache_tombstone_ttl_s,
        lease_ttl_ms=settings.cache_lease_ttl_ms,
        fill_wait_ms=settings.cache_fill_wait_ms,
        # A write's mark outlives every MongoDB call it can wait on (server selection, then the reply).
        write_mark_ms=settings.mongodb_timeout_ms + socket_timeout_ms(settings) + 1000,
    )


def build_services(
    settings: Settings, *, cache_backend: CacheBackend | None = None, events: CacheEvents | None = None
) -> Services:
    """Wire the repositories and the cache. A cache_backend replaces the Redis one (unit tests).

    The cache events go to `events` (kept as services.cache.events) and to the metrics;
    the metrics also time every Redis call."""
    mongo = MongoProductRepository()
    # What requests send to MongoDB goes through the bulkhead (jobs compare against `mongo` itself).
    shed = shed_counter()
    bulkhead = Bulkhead(settings.db_bulkhead_size, settings.db_bulkhead_wait_ms, on_shed=lambda: shed("bulkhead"))
    bounded = MongoProductRepository(bulkhead)
    if not settings.cache_enabled:
        return Services(settings=settings, products=bounded, mongo=mongo)
    events = events or EventCounter()
    sink = TeeEvents([events, PrometheusEvents()])
    cache = build_cache(settings, bounded, cache_backend, events, sink, redis_observer())
    return Services(settings=settings, products=cache.repository, mongo=mongo, cache=cache)


def build_cache(
    settings: Settings,
    mongo: MongoProductRepository,
    cache_backend: CacheBackend | None,
    events: CacheEvents,
    sink: CacheEvents | None = None,
    observer: CallObserver | None = None,
) -> CacheServices:
    """The cache group: the backend on Redis (or the one handed in) and everything built on it.

    sink receives the cache events (default: events); observer is told of every Redis call."""
    sink = sink or events
    keys = CacheKeys(settings.cache_key_prefix)
    breaker = CircuitBreaker(settings.breaker_failure_threshold, settings.breaker_cooldown_s)
    client: RedisClient | None = None
    backend: CacheBackend
    epoch_guard: CacheEpochGuard | None = None
    if cache_backend is None:
        # Each new connection is checked: no hit from a Redis that may not hold what we wrote.
        if not settings.embedded_redis:
            epoch_guard = CacheEpochGuard(
                settings.cache_key_prefix,
                events,
                settings.cache_fence_poll_s,
                cluster=settings.redis_topology is RedisTopology.CLUSTER,
            )
        client = build_redis_client(
            settings,
            on_connect=epoch_guard,
            check=epoch_guard.check if epoch_guard is not None else None,
        )
        backend = CacheBackend(client, breaker, observer)
    else:
        backend = cache_backend
    repairs = RepairLog()
    popularity = PopularityTracker(
        backend, keys, settings.popularity_sample_rate, flush_interval_s=settings.popularity_flush_s
    )
    repository = CachedProductRepository(
        mongo,
        backend,
        keys,
        TtlPolicy(settings.cache_ttl_jitter),
        cache_policy(settings),
        repairs,
        sink,
        popularity=popularity,
        # Unit tests hand in a fakeredis backend and test the fence on its own (tests/unit/test_repair_fence.py).
        fence=RepairFence(repairs, settings.cache_fence_poll_s, epoch=epoch_guard) if cache_backend is None else None,
    )
    return CacheServices(
        backend=backend,
        keys=keys,
        repository=repository,
        writer=repository.writer,
        breaker=breaker,
        repairs=repairs,
        popularity=popularity,
        events=events,
        client=client,
        epoch_guard=epoch_guard,
    )
