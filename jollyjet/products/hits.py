"""GET /api/v1/products/<id> answered before Flask's dispatch: the catalog's hot path.

Django's FetchFromCacheMiddleware shape. The read is the one the view would make, so every
guard of the catalog applies (recovery fence, breaker, cache epoch, version); the answer
carries what the Flask hooks give every other response (ETag and 304, X-Cache,
Cache-Control, X-Request-ID, the request metric, the one access line), and SecurityHeaders
wraps it like any other. Flask's dispatch, its hooks and werkzeug's Request and Response
cost about as much as the read itself, and a hit needs none of them.

Whatever is not a found product goes on to Flask, carrying the read made here (or its
error) so that nothing is read twice: an unknown id's 404 and a 503 stay where every
other error is answered. So do requests with an Origin when CORS is on.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from werkzeug.http import parse_etags

from jollyjet.ops.metrics import REQUEST_ID, observe_request, request_id_from
from jollyjet.products.record import ProductBody, Read
from jollyjet.products.schemas import RESERVED

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from jollyjet.products.catalog import Catalog

PREFIX = "/api/v1"
ROUTE = "/products/<product_id:product_id>"
# The read made here, for the view when the answer is Flask's: a Read, or the error it raised.
READ_KEY = "jollyjet.product_read"
_PATH = re.compile(re.escape(PREFIX) + r"/products/([^/]+)")
_STATUS = {200: "200 OK", 304: "304 Not Modified"}


def etag(version: int) -> str:
    """Strong ETag for a product version."""
    return f'"v{version}"'


def not_modified(environ: Mapping[str, Any], tag: str) -> bool:
    """If-None-Match names tag or is "*": a GET answers 304 (weak comparison, as RFC 9110 13.1.2 asks)."""
    # Parsed only when sent: most reads carry no If-None-Match.
    header = environ.get("HTTP_IF_NONE_MATCH")
    return header is not None and parse_etags(header).contains_weak(tag[1:-1])


class ProductHits:
    """WSGI middleware: answer a product GET whose product is found (cache hit or fill) without Flask."""

    def __init__(self, app: WSGIApplication, products: Catalog, cache_control: str, cors: bool) -> None:
        self.app = app
        self.products = products
        self.cache_control = cache_control
        self.cors = cors

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
        token = REQUEST_ID.set(request_id)  # log lines of the read, and the access line, carry the request's id
        try:
            return self._answer(environ, start_response, match.group(1), request_id, started)
        finally:
            REQUEST_ID.reset(token)

    def _answer(
        self, environ: WSGIEnvironment, start_response: StartResponse, product_id: str, request_id: str, started: float
    ) -> Iterable[bytes]:
        try:
            read: Read[ProductBody | None] = self.products.get_body(product_id)
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

    def _onward(
        self, environ: WSGIEnvironment, start_response: StartResponse, read: object, request_id: str
    ) -> Iterable[bytes]:
        """Flask answers, with the read made here and this request's id (its hook takes a well-formed one as is)."""
        environ[READ_KEY] = read
        environ["HTTP_X_REQUEST_ID"] = request_id
        return self.app(environ, start_response)


def read_made_before(environ: dict[str, Any]) -> Read[ProductBody | None] | None:
    """The read ProductHits made for this request and handed on, if any; its error is raised here."""
    read = environ.pop(READ_KEY, None)
    if isinstance(read, Exception):
        raise read
    return read
