"""HTTP rules every response follows, whichever view produced it: JSON errors for exceptions,
security and caching headers, CORS for listed origins, and the rate limits (429).

Headers. The API serves JSON and one HTML page (the API docs), never content meant to be
framed or sniffed. Write and admin responses are never worth caching by a browser or proxy
(they carry task ids, deletion counts and fresh ETags), and neither is an error: a stored
404 or 503 would outlive the condition that caused it. The public product reads carry
public_cache_control() (the product routes send it with their ETag). CORS is off unless
JOLLYJET_CORS_ORIGINS names origins: then those origins (and no others) may call the API
from a browser, with the token, and read the headers clients need.

Rate limits on what is expensive and never served from the cache: q= searches, deep list pages,
failed authentication. flask-limiter, counting per client address on the service's Redis.

- A search (`q=` on the list or the count) is a case-insensitive substring scan of the
  catalog, and nearly every distinct one is a cache miss.
- A deep page (one starting past DEEP_PAGE_OFFSET items) makes MongoDB skip
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
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, current_app, jsonify, request
from flask_limiter import ApplicationLimit, Limiter, RateLimitExceeded
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.middleware.proxy_fix import ProxyFix

from jollyjet.api import CACHE_CONTROL_KEY
from jollyjet.ops.metrics import shed_counter
from jollyjet.products.hits import etag
from jollyjet.products.repository import DatabaseUnavailable, DuplicateSku, Overloaded, ProductNotFound, VersionConflict
from jollyjet.products.schemas import default_page_size
from jollyjet.settings import (
    RATE_LIMIT_AUTH_FAILURES,
    RATE_LIMIT_DEEP_PAGES,
    RATE_LIMIT_SEARCH,
    RedisTopology,
    Settings,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)
DEEP_PAGE_OFFSET = 1000  # a list page starting this many items in is a deep page (rate limited)

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # Only frame-ancestors: a script policy would also have to allow the docs page's
    # inline start-up script, and the JSON responses run no scripts at all.
    "Content-Security-Policy": "frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ADMIN_PREFIXES = ("/api/v1/cache", "/api/v1/tasks")
# What a browser client may send and read beyond the CORS-safelisted headers.
CORS_REQUEST_HEADERS = "Authorization, Content-Type, If-Match, If-None-Match"
CORS_EXPOSED_HEADERS = "ETag, Link, Location, Retry-After, X-Cache, X-Pagination"
CORS_MAX_AGE_S = "600"


_SECURITY_ITEMS = tuple((name, value, name.lower()) for name, value in SECURITY_HEADERS.items())
# Browsers and CDNs may store a read but must ask the service before every use (RFC 9111
# 5.2.2.4), even when the service is unreachable; the ETag makes asking cheap (a 304).
# "public": the reads never depend on a token a client may send along.
REVALIDATE_EVERY_USE = "public, no-cache"


_LIST = "products.Products"
_SEARCHABLE = frozenset({_LIST, "products.ProductCount"})
# Each limit's scope: its Redis key part, the shed metric's reason and what a 429 names.
_KINDS = {"search": "q= searches", "deep_pages": "deep list pages", "auth_failures": "failed authentications"}
_UNKNOWN_ADDRESS = "unknown"


def error_response(code: int, status: str, message: str) -> Response:
    """The same JSON shape flask-smorest uses for its own errors."""
    response = jsonify({"code": code, "status": status, "message": message})
    response.status_code = code
    return response


def register_error_handlers(app: Flask) -> None:
    """Map domain exceptions to status codes, and anything unexpected to a bare 500."""

    @app.errorhandler(ProductNotFound)
    def _not_found(_: ProductNotFound) -> Response:
        return error_response(404, "Not Found", "product not found")

    @app.errorhandler(VersionConflict)
    def _conflict(error: VersionConflict) -> Response:
        response = error_response(
            412, "Precondition Failed", f"If-Match does not match the current version {error.current_version}"
        )
        response.headers["ETag"] = etag(error.current_version)
        return response

    @app.errorhandler(DuplicateSku)
    def _duplicate(_: DuplicateSku) -> Response:
        return error_response(409, "Conflict", "a product with this sku already exists")

    @app.errorhandler(DatabaseUnavailable)
    def _database_down(error: DatabaseUnavailable) -> Response:
        log.error("database unavailable: %s", error)
        response = error_response(503, "Service Unavailable", "the product database is unavailable; retry shortly")
        response.headers["Retry-After"] = "5"
        return response

    # Flask picks the handler of the most specific class: this one, not _database_down's.
    @app.errorhandler(Overloaded)
    def _overloaded(error: Overloaded) -> Response:
        response = error_response(
            503,
            "Service Unavailable",
            f"overloaded: {error.size} requests of this process are already waiting on the product database; "
            "retry shortly",
        )
        # A second: the bulkhead frees as soon as MongoDB answers the calls in flight.
        response.headers["Retry-After"] = "1"
        return response

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(_: RequestEntityTooLarge) -> Response:
        limit = app.config["MAX_CONTENT_LENGTH"]
        response = error_response(413, "Request Entity Too Large", f"the request body is larger than {limit} bytes")
        # The unread rest of the body is still on the connection: it cannot carry another
        # request. Servers that honour the app's Connection header (Werkzeug's) close it;
        # gunicorn drops hop-by-hop headers, and gunicorn.conf.py closes it there.
        response.headers["Connection"] = "close"
        return response

    # Other HTTPExceptions never get here: Flask picks the most specific handler, and
    # JsonErrorApi registers one for HTTPException. Registering this also stops
    # TESTING mode from re-raising, so tests see exactly what a client would.
    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        log.error("unexpected error serving %s %s", request.method, request.path, exc_info=error)
        return error_response(500, "Internal Server Error", "internal error; it has been logged")


def public_cache_control(settings: Settings) -> str:
    """Cache-Control of the public product reads: revalidate every use, unless the operator accepts staleness."""
    max_age, stale = settings.http_max_age_s, settings.http_stale_while_revalidate_s
    if not max_age and not stale:
        return REVALIDATE_EVERY_USE
    # No must-revalidate: it would forbid the stale-while-revalidate window the operator chose.
    return f"public, max-age={max_age}" + (f", stale-while-revalidate={stale}" if stale else "")


def never_cached(method: str, path: str) -> bool:
    """Write and admin responses must not be stored by browsers or proxies."""
    return method in WRITE_METHODS or path.startswith(ADMIN_PREFIXES)


class SecurityHeaders:
    """WSGI middleware: the fixed headers on every response the app sends (those it did not set
    itself), and Cache-Control: no-store where never_cached says so and on every error status.

    At the WSGI boundary rather than in an after_request hook: the headers are a plain list
    there, so adding four costs a few appends, where werkzeug's Headers lower-cases every
    stored name on each lookup and validates each value it adds (docs/performance.md); and
    every response passes here, whichever part of Flask produced it.
    """

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        no_store = never_cached(environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", ""))

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            present = {name.lower() for name, _ in headers}
            headers.extend((name, value) for name, value, lower in _SECURITY_ITEMS if lower not in present)
            # An error status: "4xx ..." or "5xx ...", whoever produced it (a view, Flask, a limiter).
            if no_store or status[0] in "45":
                headers[:] = [(n, v) for n, v in headers if n.lower() != "cache-control"]
                headers.append(("Cache-Control", "no-store"))
            return start_response(status, headers, exc_info)

        return self.app(environ, start)


def add_cors_headers(response: Response, origins: frozenset[str]) -> Response:
    """Allow a listed Origin (echoed, never "*", since requests carry a token); answer preflights."""
    origin = request.headers.get("Origin")
    response.vary.add("Origin")
    if origin is None or origin not in origins:
        return response
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Access-Control-Expose-Headers"] = CORS_EXPOSED_HEADERS
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        # Flask answered the OPTIONS itself, with Allow listing this URL's methods.
        response.headers["Access-Control-Allow-Methods"] = response.headers.get("Allow", "")
        response.headers["Access-Control-Allow-Headers"] = CORS_REQUEST_HEADERS
        response.headers["Access-Control-Max-Age"] = CORS_MAX_AGE_S
    return response


def register_http_headers(app: Flask, settings: Settings) -> None:
    """Security headers on every response; the reads' Cache-Control; CORS headers only when origins are configured."""
    app.config[CACHE_CONTROL_KEY] = public_cache_control(settings)
    app.wsgi_app = SecurityHeaders(app.wsgi_app)  # type: ignore[method-assign]  # Flask's documented middleware slot
    origins = frozenset(settings.cors_origins)
    if origins:
        app.after_request(lambda response: add_cors_headers(response, origins))


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
        "socket_timeout": settings.redis_timeout_ms / 1000,
        "socket_connect_timeout": settings.redis_timeout_ms / 1000,
    }


def client_address() -> str:
    """The client's address (after ProxyFix when proxies are trusted), normalised; never raw header text."""
    try:
        return str(ipaddress.ip_address(request.remote_addr or ""))
    except ValueError:
        # A forwarded value that is no address: one shared bucket, not a key made of the header.
        return _UNKNOWN_ADDRESS


def _authenticates() -> bool:
    """True when the view serving this request checks a bearer token (jollyjet/api.py marks it)."""
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
        return offset >= DEEP_PAGE_OFFSET

    uri, options = storage_uri(settings)
    limiter = Limiter(
        client_address,
        application_limits=[
            ApplicationLimit(RATE_LIMIT_SEARCH, scope="search", exempt_when=lambda: not is_search()),
            ApplicationLimit(RATE_LIMIT_DEEP_PAGES, scope="deep_pages", exempt_when=lambda: not is_deep_page()),
            ApplicationLimit(
                RATE_LIMIT_AUTH_FAILURES,
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
