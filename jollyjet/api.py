"""The API's contract with its clients, shared by every blueprint: strict request parsing,
bearer-token authentication, JSON error bodies, the OpenAPI document and its docs page.

webargs is lenient where this API must not be (unknown query parameters ignored, a non-JSON body
taken as none, JSON numbers as floats), and werkzeug quietly replaces a query string that is not
UTF-8. schemathesis holds the service to the document; the docs page is Swagger UI from the wheel.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Callable, Iterator
from decimal import Decimal
from functools import wraps
from http import HTTPStatus
from typing import Any, NoReturn, TypeVar, cast
from urllib.parse import unquote_to_bytes

import flask
import marshmallow as ma
from flask import Flask, Response, current_app, request, send_from_directory
from flask_smorest import Api, Blueprint, abort
from swagger_ui_bundle import swagger_ui_path
from webargs.flaskparser import FlaskParser, is_json_request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

F = TypeVar("F", bound=Callable[..., Any])
# Where the product routes find the Cache-Control value of their successful reads (set by jollyjet/http.py).
CACHE_CONTROL_KEY = "JOLLYJET_CACHE_CONTROL"

# Lone UTF-16 surrogates are legal as JSON escapes ("\ud800") but not as text: MongoDB cannot encode them.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# No field takes an integer near this long; int() would refuse only past 4300 digits, citing interpreter limits.
_MAX_INT_DIGITS = 30
_LISTED_PROBLEMS = 5
_MAX_MESSAGE_CHARS = 500
DEFAULT_PAGE_SIZE = 20
# Field metadata naming the config key that caps an integer query parameter (PageCaps and the document).
CAP_SETTING = "cap_setting"
MAX_PAGE_KEY = "JOLLYJET_MAX_PAGE"
MAX_PAGE_SIZE_KEY = "JOLLYJET_MAX_PAGE_SIZE"


def _not_json_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > _MAX_INT_DIGITS:
        raise ValueError(f"a number has more than {_MAX_INT_DIGITS} digits")
    return int(text)


def _object_without_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads would keep the last of two equal keys: a guess, and proxies or other parsers may guess differently.
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise ValueError(f"duplicate key {key[:50]!r} in an object")
        document[key] = value
    return document


def _has_lone_surrogate(document: Any) -> bool:
    """True if any string (key or value) holds a lone surrogate. Iterative: documents may nest deeply."""
    pending = [document]
    while pending:
        item = pending.pop()
        if isinstance(item, str) and _LONE_SURROGATE.search(item):
            return True
        if isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, dict):
            pending.extend([*item, *item.values()])
    return False


class StrictFlaskParser(FlaskParser):
    """JSON bodies must be JSON; unknown query parameters are errors, like unknown body fields."""

    DEFAULT_UNKNOWN_BY_LOCATION = FlaskParser.DEFAULT_UNKNOWN_BY_LOCATION | {"query": ma.RAISE, "querystring": ma.RAISE}

    def load_json(self, req: flask.Request, schema: ma.Schema) -> Any:
        """Strict JSON (UTF-8, no NaN/Infinity or repeated keys, fractions as Decimals): 415 or 400 otherwise."""
        if not is_json_request(req):
            abort(415, message="the request body must be JSON (Content-Type: application/json)")
        body = req.get_data(cache=True)  # 413 beyond MAX_CONTENT_LENGTH
        if not body:
            # Not a JSON document: the same 400 as other text that does not decode, not a 422 naming every field.
            abort(400, message="the request body is empty; send a JSON object", errors={"json": ["empty body"]})
        try:
            document = json.loads(
                body.decode("utf-8"),
                parse_float=Decimal,
                parse_int=_bounded_int,
                parse_constant=_not_json_constant,
                object_pairs_hook=_object_without_duplicate_keys,
            )
            if _has_lone_surrogate(document):
                raise ValueError("lone surrogate in a JSON string")
            return document
        except UnicodeDecodeError as error:  # a ValueError too: it must come first
            _bad_json(error, "it is not UTF-8 text")
        except RecursionError as error:  # what the decoder raises on absurdly deep nesting
            _bad_json(error, "it is nested too deeply")
        except ValueError as error:  # JSONDecodeError, NaN/Infinity, long numbers, lone surrogates
            _bad_json(error, str(error))

    def load_querystring(self, req: flask.Request, schema: ma.Schema) -> Any:
        """The query arguments: 400 unless UTF-8, 422 for a single-valued parameter given twice."""
        try:
            # The whole string at once: "&" and "=" are ASCII, never part of a UTF-8 sequence.
            unquote_to_bytes(req.query_string).decode("utf-8")
        except UnicodeDecodeError:
            abort(400, message="the query string is not valid UTF-8")
        repeated = sorted(
            name
            for name, values in req.args.lists()
            if len(values) > 1 and name in schema.fields and not isinstance(schema.fields[name], ma.fields.List)
        )
        if repeated:
            abort(
                422,
                message=f"query parameters given more than once: {', '.join(repeated)}",
                errors={"query": {name: ["Given more than once."] for name in repeated}},
            )
        return super().load_querystring(req, schema)


def _bad_json(error: Exception, reason: str) -> None:
    """Abort with 400, naming why the body is not JSON (abort() raises)."""
    abort(400, exc=error, message=f"the request body is not valid JSON: {reason}", errors={"json": [reason]})


class ApiBlueprint(Blueprint):
    """flask-smorest Blueprint whose @arguments use StrictFlaskParser."""

    ARGUMENTS_PARSER = StrictFlaskParser()


def require_token(view: F) -> F:
    """401 unless the request carries `Authorization: Bearer <token>` with an accepted token."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        given = presented.strip().encode()
        # Constant time: a list, not a generator, so every accepted token is compared (no early exit).
        matches = [hmac.compare_digest(given, token.encode()) for token in current_app.config["JOLLYJET_API_TOKENS"]]
        if scheme.lower() != "bearer" or not presented or not any(matches):
            abort(
                401,
                message="a valid 'Authorization: Bearer <token>' header is required",
                headers={"WWW-Authenticate": 'Bearer realm="jollyjet"'},
            )
        return view(*args, **kwargs)

    # How the failed-authentication rate limit finds the views that authenticate (jollyjet/http.py).
    wrapper.requires_token = True  # type: ignore[attr-defined]
    return cast(F, wrapper)


def _problems(errors: Any, path: str = "") -> Iterator[str]:
    """marshmallow's nested error dict as "location.field: message" lines ("_schema": the whole object)."""
    if isinstance(errors, dict):
        for key, value in errors.items():
            name = path if key == "_schema" else f"{path}.{key}" if path else str(key)
            yield from _problems(value, name)
    elif isinstance(errors, list | tuple):
        for item in errors:
            yield from _problems(item, path)
    else:
        yield f"{path}: {errors}" if path else str(errors)


def describe_errors(errors: Any) -> str:
    """One readable line naming the first few problems of a validation error."""
    problems = list(_problems(errors))
    text = "; ".join(problems[:_LISTED_PROBLEMS])
    if len(problems) > _LISTED_PROBLEMS:
        text += f"; and {len(problems) - _LISTED_PROBLEMS} more"
    # Unknown field names are echoed back: keep a hostile body from inflating the message.
    return text if len(text) <= _MAX_MESSAGE_CHARS else text[: _MAX_MESSAGE_CHARS - 3] + "..."


class JsonErrorApi(Api):
    """flask-smorest's Api whose error bodies always carry a message (it adds one only when abort() got one)."""

    def handle_http_exception(self, error: HTTPException) -> tuple[dict[str, Any], int, dict[str, str]]:
        """flask-smorest's payload, plus a message from the validation errors or the HTTP description."""
        payload, code, headers = super().handle_http_exception(error)
        if isinstance(error, MethodNotAllowed) and error.valid_methods:
            # RFC 9110 requires Allow on a 405; flask-smorest keeps only headers given to abort().
            headers = {**headers, "Allow": ", ".join(error.valid_methods)}
        if "message" not in payload:
            payload["message"] = describe_errors(payload["errors"]) if "errors" in payload else error.description
        return payload, code, headers


# Why each status is answered; shared by every operation that lists it.
_WHY = {
    400: "The body is not valid JSON (or is empty), or the query string is not UTF-8",
    401: "Missing or wrong bearer token",
    404: "No such resource (unknown or malformed id)",
    409: "Conflict with the current state",
    412: "If-Match does not name the current version",
    413: "The body is larger than JOLLYJET_MAX_BODY_BYTES (the connection is closed)",
    415: "The body is not Content-Type: application/json",
    422: "Validation failed; `errors` names each bad field",
    429: "Rate limited (q= searches, deep pages, failed authentication per client address; docs/operations.md)",
    503: "A dependency (MongoDB, or for admin endpoints the broker or Redis) is unreachable, "
    "or too many requests of the process wait on MongoDB (its bulkhead)",
}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}, "required": True}},
    429: {"Retry-After": {"schema": {"type": "string"}, "required": True}},
    503: {"Retry-After": {"schema": {"type": "string"}, "required": True}},
}


def errors(blp: Blueprint, *codes: int, why: dict[int, str] | None = None) -> Callable[[F], F]:
    """Document each status in codes as a JSON error (the Error schema) on one operation."""
    if 401 in codes and 429 not in codes:
        codes = (*codes, 429)  # every operation that authenticates has the failed-authentication limit

    def decorate(view: F) -> F:
        for code in codes:
            description = (why or {}).get(code) or _WHY.get(code) or HTTPStatus(code).phrase
            view = blp.alt_response(code, schema="Error", description=description, headers=_HEADERS.get(code))(view)
        return view

    return decorate


ASSETS_URL = "/api/docs/assets/"
assets = flask.Blueprint("api_docs_assets", __name__)


@assets.get(f"{ASSETS_URL}<path:filename>")
def asset(filename: str) -> Response:
    """One Swagger UI file (send_from_directory refuses paths outside the bundle)."""
    return send_from_directory(str(swagger_ui_path), filename, max_age=3600)


def default_page_size(cap: int) -> int:
    """The page size when the client names none: never above the configured cap."""
    return min(DEFAULT_PAGE_SIZE, cap)


def _check_cap(value: int, setting: str) -> None:
    cap = current_app.config[setting]
    if value > cap:
        raise ma.ValidationError(f"must be at most {cap}")


class PageCaps(ma.Schema):
    """The caps of a paginated query's `page` and `page_size` (from settings), and page_size's default under its cap."""

    @ma.validates("page")
    def _page_cap(self, value: int, **_: Any) -> None:
        _check_cap(value, MAX_PAGE_KEY)

    @ma.validates("page_size")
    def _page_size_cap(self, value: int, **_: Any) -> None:
        _check_cap(value, MAX_PAGE_SIZE_KEY)

    @ma.post_load
    def _default_page_size(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        data.setdefault("page_size", default_page_size(current_app.config[MAX_PAGE_SIZE_KEY]))
        return data


class AtLeastOneField(ma.Schema):
    """A partial update must change something (the document says so with Meta.openapi_extra's minProperties)."""

    @ma.validates_schema
    def _not_empty(self, data: dict[str, Any], **_: Any) -> None:
        if not data:
            raise ma.ValidationError("send at least one field to change", "_schema")


def init_api(app: Flask) -> Api:
    """flask-smorest's Api with its docs page and contract. One per app: it holds the app's OpenAPI spec."""
    app.config.update(
        API_TITLE="JollyJet catalog API",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",  # under OPENAPI_URL_PREFIX
        OPENAPI_SWAGGER_UI_URL=ASSETS_URL,
    )
    app.register_blueprint(assets)
    api = JsonErrorApi(app)
    api.spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer"})

    def configured_caps(_converter: Any, field: ma.fields.Field, **_: Any) -> dict[str, Any]:
        setting = field.metadata.get(CAP_SETTING)
        if setting == MAX_PAGE_SIZE_KEY:
            return {"maximum": app.config[setting], "default": default_page_size(app.config[setting])}
        return {} if setting is None else {"maximum": app.config[setting]}

    converter = api.ma_plugin.converter
    converter.add_attribute_function(configured_caps)
    plain_schema = converter.schema2jsonschema

    # apispec has no hook for schema-level keywords (minProperties): a schema's Meta.openapi_extra is merged here.
    def schema_with_extras(schema: Any) -> dict[str, Any]:
        return {**plain_schema(schema), **getattr(getattr(schema, "Meta", None), "openapi_extra", {})}

    converter.schema2jsonschema = schema_with_extras
    return api
