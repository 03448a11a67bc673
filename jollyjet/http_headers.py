"""Security headers on every response, and CORS only for the origins an operator lists.

The API serves JSON and one HTML page (the API docs), never content meant to be framed
or sniffed. Write and admin responses are never worth caching by a browser or proxy
(they carry task ids, deletion counts and fresh ETags). CORS is off unless
JOLLYJET_CORS_ORIGINS names origins: then those origins (and no others) may call the
API from a browser, with the token, and read the headers clients need.
"""

from __future__ import annotations

from flask import Flask, Request, Response, request

from jollyjet.settings import Settings

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
CORS_EXPOSED_HEADERS = "ETag, Location, Retry-After, X-Cache, X-Pagination"
CORS_MAX_AGE_S = "600"


def never_cached(req: Request) -> bool:
    """Write and admin responses must not be stored by browsers or proxies."""
    return req.method in WRITE_METHODS or req.path.startswith(ADMIN_PREFIXES)


_SECURITY_ITEMS = tuple(SECURITY_HEADERS.items())
_SECURITY_NAMES = frozenset(name.lower() for name in SECURITY_HEADERS)


def add_security_headers(response: Response) -> Response:
    """The fixed headers (those a view did not set), plus Cache-Control: no-store where never_cached says so."""
    headers = response.headers
    # Every request pays this: one pass over the headers instead of a lookup per header
    # (werkzeug lower-cases every stored name on each lookup, docs/performance.md).
    present = {name.lower() for name, _ in headers.items()}
    if present.isdisjoint(_SECURITY_NAMES):
        headers.extend(_SECURITY_ITEMS)
    else:
        headers.extend([(name, value) for name, value in _SECURITY_ITEMS if name.lower() not in present])
    if never_cached(request):
        headers["Cache-Control"] = "no-store"
    return response


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
    """Security headers on every response; CORS headers only when origins are configured."""
    app.after_request(add_security_headers)
    origins = frozenset(settings.cors_origins)
    if origins:
        app.after_request(lambda response: add_cors_headers(response, origins))
