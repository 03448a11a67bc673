"""What a request or a task works with (Services), built once per app, and the one way to reach it.

flask-smorest's Api and flask-limiter's Limiter are made per app in the factory instead: each
holds per-app state, and tests build many apps in one process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from flask import Flask, current_app

if TYPE_CHECKING:  # types only: routes import this module and must not import Redis
    from jollyjet.cache.epoch import CacheEpochGuard
    from jollyjet.cache.fence import CircuitBreaker, RepairLog
    from jollyjet.cache.keys import CacheKeys, PopularityTracker
    from jollyjet.cache.store import CacheBackend
    from jollyjet.products.catalog import CachedProductRepository, Catalog
    from jollyjet.products.catalog_writes import ProductCacheWriter
    from jollyjet.products.repository import MongoProductRepository
    from jollyjet.settings import Settings

EXTENSION = "jollyjet"  # the key in app.extensions


class CacheDisabled(RuntimeError):
    """Something that needs the cache ran with JOLLYJET_CACHE_ENABLED=false."""


@dataclass(frozen=True, kw_only=True)
class CacheServices:
    """The Redis cache and everything that runs on it."""

    backend: CacheBackend
    keys: CacheKeys
    repository: CachedProductRepository  # the cached product repository (services.products when the cache is on)
    writer: ProductCacheWriter  # every version-guarded write of a product entry
    breaker: CircuitBreaker
    repairs: RepairLog  # cache writes that failed after their database write
    popularity: PopularityTracker
    epoch_guard: CacheEpochGuard | None = None  # checks each new Redis connection (None without a real Redis)


@dataclass(frozen=True, kw_only=True)
class Services:
    """Everything a request or a task needs, built once per process."""

    settings: Settings
    # What views, commands and jobs call: the cached repository, or MongoDB's behind the bulkhead.
    products: Catalog
    mongo: MongoProductRepository  # the source of truth, uncached (jobs compare against it)
    cache: CacheServices | None = None  # None: the cache is switched off

    def require_cache(self) -> CacheServices:
        """The cache group, for code that only runs with the cache on; raises CacheDisabled otherwise."""
        if self.cache is None:
            raise CacheDisabled("the cache is disabled (JOLLYJET_CACHE_ENABLED=false)")
        return self.cache


def current_services() -> Services:
    """The services of the current Flask app (inside a request, a task or an app context)."""
    return services_of(current_app)


def services_of(app: Flask) -> Services:
    """The services an app was built with."""
    return cast(Services, app.extensions[EXTENSION])
