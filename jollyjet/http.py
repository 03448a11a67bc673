"""What every response follows, whichever code produced it, and the cached product read.

- JSON errors for the domain exceptions; security headers; no-store on writes, admin and errors
  (a stored 404 or 503 would outlive its cause); the reads' Cache-Control; CORS only for the
  origins JOLLYJET_CORS_ORIGINS names.
- ProductHits: a found product's GET answered before Flask's dispatch (Django's
  FetchFromCacheMiddleware shape) by the read the view would make, so every catalog guard
  applies; anything else goes on to Flask carrying that read, so nothing is read twice.
- Rate limits on what is expensive and never cached (q= searches, deep pages, failed
  authentication), per client address on the cache's Redis. docs/operations.md, "Overload".
"""

from __future__ import annotations

import ipaddress
import logging
import math
import re
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, current_app, jsonify, request
from flask_limiter import ApplicationLimit, Limiter, RateLimitExceeded
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import parse_etags
from werkzeug.middleware.proxy_fix import ProxyFix

from jollyjet.api import CACHE_CONTROL_KEY, default_page_size
from jollyjet.ops.metrics import REQUEST_ID, observe_request, request_id_from, shed_counter
from jollyjet.products.record import ProductBody, Read
from jollyjet.products.repository import DatabaseUnavailable, DuplicateSku, Overloaded, ProductNotFound, VersionConflict
from jollyjet.products.schemas import RESERVED
from jollyjet.settings import RedisTopology, Settings

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from jollyjet.products.catalog import Catalog

log = logging.getLogger(__name__)
PREFIX = "/api/v1"
ROUTE = "/products/<product_id:product_id>"
DEEP_PAGE_OFFSET = 1000  # a list page starting this many items in is a deep page (rate limited)
# Per client address (flask-limiter syntax; tests/unit/test_overload.py checks they parse):
RATE_LIMIT_SEARCH = "10/second;120/minute"  # requests with q= (list and count)
RATE_LIMIT_DEEP_PAGES = "5/second;60/minute"  # list pages starting past DEEP_PAGE_OFFSET items
RATE_LIMIT_AUTH_FAILURES = "10/minute;100/hour"  # 401s on the endpoints that need a token
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # Only frame-ancestors: a script policy would also have to allow the docs page's inline script.
    "Content-Security-Policy": "frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ADMIN_PREFIXES = ("/api/v1/cache", "/api/v1/tasks")
# What a browser client may send and read beyond the CORS-safelisted headers.
CORS_REQUEST_HEADERS = "Authorization, Content-Type, If-Match, If-None-Match"
CORS_EXPOSED_HEADERS = "ETag, Link, Location, Retry-After, X-Cache, X-Pagination"
CORS_MAX_AGE_S = "600"
# Stored by browsers and CDNs but revalidated before every use (RFC 9111 5.2.2.4), even when the
# service is unreachable; the ETag makes asking cheap. "public": no read depends on a token.
REVALIDATE_EVERY_USE = "public, no-cache"
_SECURITY_ITEMS = tuple((name, value, name.lower()) for name, value in SECURITY_HEADERS.items())
# The read ProductHits made, for the view when Flask answers: a Read, or the error it raised.
_READ_KEY = "jollyjet.product_read"
_PATH = re.compile(re.escape(PREFIX) + r"/products/([^/]+)")
_STATUS = {200: "200 OK", 304: "304 Not Modified"}
_LIST = "products.Products"
_SEARCHABLE = frozenset({_LIST, "products.ProductCount"})
# Each limit's scope: its Redis key part, the shed metric's reason and what a 429 names.
_KINDS = {"search": "q= searches", "deep_pages": "deep list pages", "auth_failures": "failed authentications"}


def error_response(code: int, status: str, message: str) -> Response:
    """The same JSON shape flask-smorest uses for its own errors."""
    response = jsonify({"code": code, "status": status, "message": message})
    response.status_code = code
    return response


def etag(version: int) -> str:
    """Strong ETag for a product version."""
    return f'"v{version}"'


def not_modified(environ: Mapping[str, Any], tag: str) -> bool:
    """If-None-Match names tag or is "*": a GET answers 304 (weak comparison, RFC 9110 13.1.2)."""
    header = environ.get("HTTP_IF_NONE_MATCH")  # parsed only when sent: most reads carry none
    return header is not None and parse_etags(header).contains_weak(tag[1:-1])


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
        response.headers["Retry-After"] = "1"  # the bulkhead frees as soon as MongoDB answers the calls in flight
        return response

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(_: RequestEntityTooLarge) -> Response:
        limit = app.config["MAX_CONTENT_LENGTH"]
        response = error_response(413, "Request Entity Too Large", f"the request body is larger than {limit} bytes")
        # The unread rest of the body is still on the connection: Werkzeug closes it on this
        # header; gunicorn drops hop-by-hop headers, and gunicorn.conf.py closes it there.
        response.headers["Connection"] = "close"
        return response

    # Other HTTPExceptions never get here (JsonErrorApi handles HTTPException). Registering this
    # also stops TESTING mode from re-raising, so tests see exactly what a client would.
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
    """WSGI middleware: the fixed headers on every response, and no-store where never_cached says so or on errors.

    At the WSGI boundary: every response passes here, and the headers are a plain list, where
    werkzeug's Headers would lower-case every name on each lookup (docs/performance.md).
    """

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        no_store = never_cached(environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", ""))

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            present = {name.lower() for name, _ in headers}
            headers.extend((name, value) for name, value, lower in _SECURITY_ITEMS if lower not in present)
            if no_store or status[0] in "45":  # an error status, whoever produced it
                headers[:] = [(n, v) for n, v in headers if n.lower() != "cache-control"]
                headers.append(("Cache-Control", "no-store"))
            return start_response(status, headers, exc_info)

        return self.app(environ, start)


class ProductHits:
    """WSGI middleware: answer a product GET whose product is found (cache hit or fill) without Flask.

    The answer carries what Flask's hooks give every other response (ETag and 304, X-Cache,
    Cache-Control, X-Request-ID, the request metric, the access line); SecurityHeaders wraps it.
    Flask's dispatch and werkzeug's Request and Response cost about as much as the read itself.
    """

    def __init__(self, app: WSGIApplication, products: Catalog, cache_control: str, cors: bool) -> None:
        self.app = app
        self.products = products
        self.cache_control = cache_control
        self.cors = cors  # with CORS on, a request with an Origin goes to Flask's CORS hook

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        match = _PATH.fullmatch(environ.get("PATH_INFO", ""))
        if (
            match is None
            or environ.get("REQUEST_METHOD") != "GET"
            or match.group(1) in RESERVED
            or (self.cors and "HTTP_ORIGIN" in environ)
        ):
            return self.app(environ, start_response)
        started = time.perf_counter()
        request_id = request_id_from(environ.get("HTTP_X_REQUEST_ID"))
        token = REQUEST_ID.set(request_id)  # the read's log lines and the access line carry it
        try:
            try:
                read: Read[ProductBody | None] = self.products.get_body(match.group(1))
            except Exception as error:  # answered by Flask's error handlers, like every other error
                return self._onward(environ, start_response, error, request_id)
            if read.value is None:
                return self._onward(environ, start_response, read, request_id)
            tag, cache = etag(read.value.version), read.source.value
            headers = [("ETag", tag), ("X-Cache", cache), ("Cache-Control", self.cache_control)]
            if not_modified(environ, tag):
                status, body = 304, b""
            else:
                status, body = 200, read.value.body
                headers += [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
            headers.append(("X-Request-ID", request_id))
            seconds = time.perf_counter() - started
            observe_request("GET", PREFIX + ROUTE, environ.get("PATH_INFO", ""), status, cache.lower(), seconds)
            start_response(_STATUS[status], headers)
            return [body]
        finally:
            REQUEST_ID.reset(token)

    def _onward(
        self, environ: WSGIEnvironment, start_response: StartResponse, read: object, request_id: str
    ) -> Iterable[bytes]:
        """Flask answers, with the read made here and this request's id (its hook takes a well-formed one as is)."""
        environ[_READ_KEY] = read
        environ["HTTP_X_REQUEST_ID"] = request_id
        return self.app(environ, start_response)


def read_made_before(environ: dict[str, Any]) -> Read[ProductBody | None] | None:
    """The read ProductHits made for this request and handed on, if any; its error is raised here."""
    read = environ.pop(_READ_KEY, None)
    if isinstance(read, Exception):
        raise read
    return read


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


def register_http_headers(app: Flask, settings: Settings, products: Catalog) -> None:
    """The hit middleware inside SecurityHeaders (hits get those headers too); CORS only when origins are set."""
    cache_control = app.config[CACHE_CONTROL_KEY] = public_cache_control(settings)
    origins = frozenset(settings.cors_origins)
    hits = ProductHits(app.wsgi_app, products, cache_control, bool(origins))
    app.wsgi_app = SecurityHeaders(hits)  # type: ignore[method-assign]  # Flask's documented middleware slot
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
    timeout_s = settings.redis_timeout_ms / 1000
    return uri, {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s}


def client_address() -> str:
    """The client's address (after ProxyFix when proxies are trusted), normalised; never raw header text."""
    try:
        return str(ipaddress.ip_address(request.remote_addr or ""))
    except ValueError:  # a forwarded value that is no address: one shared bucket, not a key made of the header
        return "unknown"


def _authenticates() -> bool:
    """True when the view serving this request checks a bearer token (api.require_token marks it)."""
    view = current_app.view_functions.get(request.endpoint or "")
    view_class = getattr(view, "view_class", None)
    if view_class is not None:
        view = getattr(view_class, "get" if request.method == "HEAD" else request.method.lower(), None)
    return bool(getattr(view, "requires_token", False))


def register_rate_limits(app: Flask, settings: Settings) -> Limiter | None:
    """flask-limiter on this app (its own instance: flask-limiter keeps the storage on the instance)."""
    if settings.trusted_proxies:
        # Count by the address the last trusted proxy saw; without trusted proxies X-Forwarded-For is anyone's text.
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
            # Beyond the failures allowed, every request that authenticates answers 429 until the
            # window ends (a correct guess too, or the limit would not slow a guesser down).
            ApplicationLimit(
                RATE_LIMIT_AUTH_FAILURES,
                scope="auth_failures",
                exempt_when=lambda: not _authenticates(),
                deduct_when=lambda response: response.status_code == 401,
            ),
        ],
        storage_uri=uri,
        storage_options=options,
        key_prefix=f"{settings.cache_key_prefix}:rl",
        strategy="fixed-window",  # one INCR per limited request
        # Redis down: each process counts in its own memory until it answers again, never a 500.
        in_memory_fallback_enabled=True,
        swallow_errors=True,
        headers_enabled=False,  # X-RateLimit-* would cost a second Redis call on every limited request
    )
    # Cached reads, health checks, metrics: no limit applies, and none is looked up (no Redis call).
    limiter.request_filter(lambda: not (is_search() or is_deep_page() or _authenticates()))
    limiter.init_app(app)
    # flask-limiter logs every breach at INFO: under a flood, a second flood. The metric counts them.
    logging.getLogger("flask-limiter").setLevel(logging.WARNING)
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

    return limiter


def _retry_after(limiter: Limiter, error: RateLimitExceeded) -> int:
    """Seconds until the breached window ends (asked of the storage); its whole length if that fails."""
    breached = limiter.current_limit
    try:
        if breached is not None:
            return max(1, math.ceil(breached.window.reset_time - time.time()))
    except Exception:  # the storage failed between the breach and now: the longest it can be
        log.warning("could not read the rate limit window; Retry-After is the window's length")
    return max(1, int(error.limit.limit.get_expiry()))
