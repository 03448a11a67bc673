"""Security headers on every response, caching rules for browsers and CDNs, and CORS only
for the origins an operator lists.

The API serves JSON and one HTML page (the API docs), never content meant to be framed
or sniffed. Write and admin responses are never worth caching by a browser or proxy
(they carry task ids, deletion counts and fresh ETags), and neither is an error: a
stored 404 or 503 would outlive the condition that caused it. The public product reads
carry public_cache_control() (the product routes send it with their ETag). CORS is off
unless JOLLYJET_CORS_ORIGINS names origins: then those origins (and no others) may call
the API from a browser, with the token, and read the headers clients need.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, request

from jollyjet.settings import Settings

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

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


# Where the product routes find the Cache-Control value of their successful reads.
CACHE_CONTROL_KEY = "JOLLYJET_CACHE_CONTROL"
# Browsers and CDNs may store a read but must ask the service before every use (RFC 9111
# 5.2.2.4), even when the service is unreachable; the ETag makes asking cheap (a 304).
# "public": the reads never depend on a token a client may send along.
REVALIDATE_EVERY_USE = "public, no-cache"


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
