"""Rate limits on what is expensive and never served from the cache: q= searches, deep list pages,
failed authentication. flask-limiter, counting per client address on the service's Redis.

- A search (`q=` on the list or the count) is a case-insensitive substring scan of the
  catalog, and nearly every distinct one is a cache miss.
- A deep page (one starting past JOLLYJET_DEEP_PAGE_OFFSET items) makes MongoDB skip
  that many documents, and crawlers ask for each page once.
- Failed authentication: each address may fail so often; beyond, every request that
  authenticates answers 429 until the window ends (a correct guess too, or the limit
  would not slow a guesser down).
Anything else (cached reads, health checks) is filtered out before any limit is looked
at: it costs no Redis call. A breach answers 429 with Retry-After and the JSON error shape.

The counts live in Redis, shared by every process (memory:// in the embedded mode). When
that Redis fails, each process counts in its own memory until it answers again: a log line
when it switches, never a 500 (flask-limiter's in-memory fallback; swallow_errors for
anything else the limiter raises). docs/operations.md, "Overload".
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from typing import Any

from flask import Flask, Response, current_app, request
from flask_limiter import ApplicationLimit, Limiter, RateLimitExceeded
from werkzeug.middleware.proxy_fix import ProxyFix

from jollyjet.errors import error_response
from jollyjet.ops.metrics import shed_counter
from jollyjet.products.schemas import default_page_size
from jollyjet.settings import RedisTopology, Settings

log = logging.getLogger(__name__)
_LIST = "products.Products"
_SEARCHABLE = frozenset({_LIST, "products.ProductCount"})
# Each limit's scope: its Redis key part, the shed metric's reason and what a 429 names.
_KINDS = {"search": "q= searches", "deep_pages": "deep list pages", "auth_failures": "failed authentications"}
_UNKNOWN_ADDRESS = "unknown"


def storage_uri(settings: Settings) -> tuple[str, dict[str, Any]]:
    """The limits storage URI and its options: JOLLYJET_RATE_LIMIT_STORAGE_URI, else the cache's Redis."""
    uri = settings.rate_limit_storage_uri
    if uri is None:
        if settings.embedded_redis:
            return "memory://", {}
        if settings.redis_topology is not RedisTopology.STANDALONE or settings.redis_url is None:
            log.warning(
                "rate limits count per process (in memory) with a %s Redis: set JOLLYJET_RATE_LIMIT_STORAGE_URI "
                "(redis+sentinel://... or redis+cluster://...) to share them",
                settings.redis_topology.value,
            )
            return "memory://", {}
        # limits passes redis:// and rediss:// to redis-py as they are; a socket path needs its own scheme.
        uri = settings.redis_url.replace("unix://", "redis+unix://", 1)
    if uri.startswith("memory://"):
        return uri, {}
    # The cache's timeouts: a hung Redis delays a limited request by these, never longer.
    return uri, {
        "socket_timeout": settings.redis_socket_timeout_ms / 1000,
        "socket_connect_timeout": settings.redis_connect_timeout_ms / 1000,
    }


def client_address() -> str:
    """The client's address (after ProxyFix when proxies are trusted), normalised; never raw header text."""
    try:
        return str(ipaddress.ip_address(request.remote_addr or ""))
    except ValueError:
        # A forwarded value that is no address: one shared bucket, not a key made of the header.
        return _UNKNOWN_ADDRESS


def _authenticates() -> bool:
    """True when the view serving this request checks a bearer token (jollyjet/auth.py marks it)."""
    view = current_app.view_functions.get(request.endpoint or "")
    view_class = getattr(view, "view_class", None)
    if view_class is not None:
        method = "get" if request.method == "HEAD" else request.method.lower()
        view = getattr(view_class, method, None)
    return bool(getattr(view, "requires_token", False))


def register_rate_limits(app: Flask, settings: Settings) -> Limiter | None:
    """flask-limiter on this app (its own instance: flask-limiter keeps the storage on the instance)."""
    if settings.trusted_proxies:
        # The address a limit counts by is the one the last trusted proxy saw; without
        # trusted proxies X-Forwarded-For is anyone's text and is ignored.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies)  # type: ignore[method-assign]
    if not settings.rate_limits_enabled:
        return None
    deep_offset = settings.deep_page_offset
    page_size = default_page_size(settings.max_page_size)

    def is_search() -> bool:
        return request.endpoint in _SEARCHABLE and bool(request.args.get("q"))

    def is_deep_page() -> bool:
        if request.endpoint != _LIST:
            return False
        try:
            offset = (int(request.args.get("page", 1)) - 1) * int(request.args.get("page_size", page_size))
        except ValueError:
            return False  # the schema answers 422 for it
        return offset >= deep_offset

    uri, options = storage_uri(settings)
    limiter = Limiter(
        client_address,
        application_limits=[
            ApplicationLimit(settings.rate_limit_search, scope="search", exempt_when=lambda: not is_search()),
            ApplicationLimit(
                settings.rate_limit_deep_pages, scope="deep_pages", exempt_when=lambda: not is_deep_page()
            ),
            ApplicationLimit(
                settings.rate_limit_auth_failures,
                scope="auth_failures",
                exempt_when=lambda: not _authenticates(),
                # Counted only when the answer is 401; tested before every request that authenticates.
                deduct_when=lambda response: response.status_code == 401,
            ),
        ],
        storage_uri=uri,
        storage_options=options,
        key_prefix=f"{settings.cache_key_prefix}:rl",
        strategy="fixed-window",  # one INCR per limited request
        in_memory_fallback_enabled=True,
        swallow_errors=True,
        headers_enabled=False,  # X-RateLimit-* would cost a second Redis call on every limited request
    )
    # Cached reads, health checks, metrics: no limit applies, and none is looked up.
    limiter.request_filter(lambda: not (is_search() or is_deep_page() or _authenticates()))
    limiter.init_app(app)
    # flask-limiter logs every breach at INFO: under a flood, a second flood. The metric counts them.
    logging.getLogger("flask-limiter").setLevel(logging.WARNING)
    _register_breach_handler(app, limiter)
    return limiter


def _register_breach_handler(app: Flask, limiter: Limiter) -> None:
    shed = shed_counter()

    @app.errorhandler(RateLimitExceeded)
    def _too_many(error: RateLimitExceeded) -> Response:
        scope = str(error.limit.scope)  # one of _KINDS: every limit here has a fixed scope
        shed(scope)
        response = error_response(
            429,
            "Too Many Requests",
            f"too many {_KINDS.get(scope, 'requests')} from this address (limit {error.limit.limit}); "
            "retry after the Retry-After seconds",
        )
        response.headers["Retry-After"] = str(_retry_after(limiter, error))
        return response


def _retry_after(limiter: Limiter, error: RateLimitExceeded) -> int:
    """Seconds until the breached window ends (asked of the storage); its whole length if that fails."""
    breached = limiter.current_limit
    try:
        if breached is not None:
            return max(1, math.ceil(breached.window.reset_time - time.time()))
    except Exception:  # the storage failed between the breach and now: the longest it can be
        log.warning("could not read the rate limit window; Retry-After is the window's length")
    return max(1, int(error.limit.limit.get_expiry()))
