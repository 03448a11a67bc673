"""The application factory: create_app's named steps, and the Services it builds from settings.

Building an app connects to nothing (clients connect on first use) and writes nothing; what a
process does once at start-up is its entry point's (app.py, `python -m jollyjet`). The web,
the worker and beat all build their app here, so they all run on the same Services.
"""

from __future__ import annotations

import logging
import threading

from flask import Flask

from jollyjet import jobs
from jollyjet.api import MAX_PAGE_KEY, MAX_PAGE_SIZE_KEY, init_api
from jollyjet.cache.client import build_redis_client
from jollyjet.cache.epoch import CacheEpochGuard
from jollyjet.cache.fence import CircuitBreaker, RepairFence, RepairLog
from jollyjet.cache.keys import CacheKeys, PopularityTracker, TtlPolicy
from jollyjet.cache.store import CacheBackend, CacheEvents
from jollyjet.commands import register_commands
from jollyjet.db import connect_mongo, socket_timeout_ms
from jollyjet.extensions import EXTENSION, CacheServices, Services
from jollyjet.http import register_error_handlers, register_http_headers, register_rate_limits
from jollyjet.jobs import celery_init_app
from jollyjet.ops.admin import blp as admin_blp
from jollyjet.ops.admin import init_ops, metrics_blp, stats_blp
from jollyjet.ops.health import blp as health_blp
from jollyjet.ops.logs import configure_logging
from jollyjet.ops.metrics import PrometheusEvents, QueryCounter, redis_observer, shed_counter
from jollyjet.products.catalog import CachedProductRepository, CachePolicy
from jollyjet.products.repository import Bulkhead, MongoProductRepository
from jollyjet.products.schemas import register_product_contract
from jollyjet.products.views import blp as products_blp
from jollyjet.settings import BREAKER_FAILURES, DEV_TOKEN, Environment, RedisTopology, Settings, load_settings

log = logging.getLogger(__name__)
# Fixed values that were settings nobody tuned (the rest: jollyjet/settings.py; the cache's timings: CachePolicy).
CACHE_TTL_JITTER = 0.1  # TTLs are spread uniformly by +- this fraction
DB_BULKHEAD_WAIT_MS = 100  # a bulkhead waiter's longest wait (a few MongoDB calls): a burst waits, a flood is shed
POPULARITY_FLUSH_S = 5.0  # seconds between a process's batched sends of its read counts (0: at once)


def create_app(settings: Settings | None = None, services: Services | None = None) -> Flask:
    """Build the WSGI app from settings (or the environment); services are built from them unless given."""
    settings = settings or load_settings()
    configure_logging(settings)
    app = Flask("jollyjet")
    app.config.update(
        TESTING=settings.env is Environment.TESTING,
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        JOLLYJET_API_TOKENS=api_tokens(settings),
        # The keys the page caps are read under (api.PageCaps and the OpenAPI document).
        **{MAX_PAGE_KEY: settings.max_page, MAX_PAGE_SIZE_KEY: settings.max_page_size},
    )
    connect_mongo(settings, [QueryCounter()])
    services = app.extensions[EXTENSION] = services or build_services(settings)
    register_jobs(app, settings, services)
    api = init_api(app)
    register_product_contract(api, app)
    for blueprint in (products_blp, admin_blp, health_blp, stats_blp, metrics_blp):
        api.register_blueprint(blueprint)  # through the Api, so each appears in the OpenAPI document
    register_error_handlers(app)
    register_http_headers(app, settings, services.products)
    init_ops(app, settings, services)
    # After monitoring: its before_request hook must run first, or a 429 would go unmeasured.
    register_rate_limits(app, settings)
    register_commands(app)
    return app


def api_tokens(settings: Settings) -> tuple[str, ...]:
    """Configured tokens; outside production, a well-known development token when none is set."""
    if settings.api_tokens or settings.env is Environment.PRODUCTION:
        return settings.api_tokens
    log.warning("JOLLYJET_API_TOKENS is not set: writes accept the development token %r", DEV_TOKEN)
    return (DEV_TOKEN,)


def register_jobs(app: Flask, settings: Settings, services: Services) -> None:
    """The Celery app (app.extensions["celery"]); after a Redis outage, enqueue the repair job at once."""
    celery = celery_init_app(app, settings)
    if services.cache is None or not settings.job_on("repair"):
        return

    def enqueue_repair() -> None:
        try:
            celery.send_task(jobs.REPAIR)
        except Exception:  # the broker may be down too; beat runs the repair anyway
            log.warning("could not enqueue the cache repair after Redis recovered", exc_info=True)

    # In a thread: the listener runs inside the request that closed the breaker, which a dead broker must not hold up.
    services.cache.breaker.on_recover.append(lambda: threading.Thread(target=enqueue_repair, daemon=True).start())


def build_services(
    settings: Settings, *, cache_backend: CacheBackend | None = None, events: CacheEvents | None = None
) -> Services:
    """Wire the repositories and the cache; tests may replace the Redis backend and the metrics' event sink."""
    mongo = MongoProductRepository()
    # What requests send to MongoDB goes through the bulkhead (jobs compare against `mongo` itself).
    shed = shed_counter()
    bulkhead = Bulkhead(settings.db_bulkhead_size, DB_BULKHEAD_WAIT_MS, on_shed=lambda: shed("bulkhead"))
    bounded = MongoProductRepository(bulkhead)
    if not settings.cache_enabled:
        return Services(settings=settings, products=bounded, mongo=mongo)
    keys = CacheKeys(settings.cache_key_prefix)
    breaker = CircuitBreaker(BREAKER_FAILURES, settings.breaker_cooldown_s)
    repairs = RepairLog()
    epoch_guard: CacheEpochGuard | None = None
    fence: RepairFence | None = None
    backend, poll_s = cache_backend, settings.cache_fence_poll_s
    if backend is None:
        # Each new connection is checked: no hit from a Redis that may not hold what we wrote.
        if not settings.embedded_redis:
            cluster = settings.redis_topology is RedisTopology.CLUSTER
            epoch_guard = CacheEpochGuard(settings.cache_key_prefix, poll_s, cluster=cluster)
        client = build_redis_client(settings, on_connect=epoch_guard, check=epoch_guard and epoch_guard.check)
        backend = CacheBackend(client, breaker, redis_observer())
        # Unit tests hand in a fakeredis backend and test the fence on its own (tests/unit/test_repair_fence.py).
        fence = RepairFence(repairs, poll_s, epoch=epoch_guard)
    events = events or PrometheusEvents()
    popularity = PopularityTracker(backend, keys, settings.popularity_sample_rate, flush_interval_s=POPULARITY_FLUSH_S)
    policy = CachePolicy(
        product_ttl_s=settings.cache_product_ttl_s,
        list_ttl_s=settings.cache_list_ttl_s,
        # A write's mark outlives every MongoDB call it can wait on (server selection, then the reply).
        write_mark_ms=settings.mongodb_timeout_ms + socket_timeout_ms(settings) + 1000,
    )
    repository = CachedProductRepository(
        bounded, backend, keys, TtlPolicy(CACHE_TTL_JITTER), policy, repairs, events, popularity=popularity, fence=fence
    )
    cache = CacheServices(
        backend=backend,
        keys=keys,
        repository=repository,
        writer=repository.writer,
        breaker=breaker,
        repairs=repairs,
        popularity=popularity,
        epoch_guard=epoch_guard,
    )
    return Services(settings=settings, products=repository, mongo=mongo, cache=cache)
