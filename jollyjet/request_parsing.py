"""Strict request parsing for flask-smorest blueprints: JSON bodies and query strings.

webargs' defaults are lenient where this API must not be: it ignores unknown query
parameters, treats a non-JSON body as "no body", parses JSON numbers as floats and
lets decoder failures other than JSONDecodeError escape as 500s. Werkzeug, for its
part, decodes a query string that is not UTF-8 by quietly substituting U+FFFD and
keeps only the first of repeated parameters.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any, NoReturn
from urllib.parse import unquote_to_bytes

import flask
import marshmallow as ma
from flask_smorest import Blueprint, abort
from webargs.flaskparser import FlaskParser, is_json_request

# Lone UTF-16 surrogates are legal as JSON escapes ("\ud800") but not as text:
# MongoDB cannot encode them, so they are refused with the rest of the bad JSON.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# No field takes an integer anywhere near this long. Refusing here names the problem;
# int() would refuse only past 4300 digits, with a message about interpreter limits.
_MAX_INT_DIGITS = 30


def _not_json_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > _MAX_INT_DIGITS:
        raise ValueError(f"a number has more than {_MAX_INT_DIGITS} digits")
    return int(text)


def _object_without_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads would silently keep the last of two equal keys; which one a client
    # meant is a guess, and proxies or other parsers may guess differently.
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
        if isinstance(item, str):
            if _LONE_SURROGATE.search(item):
                return True
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
    return False


def decode_json_body(body: bytes) -> Any:
    """Strict JSON: UTF-8, no NaN/Infinity or repeated keys, fractions as exact Decimals; raises ValueError."""
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


class StrictFlaskParser(FlaskParser):
    """JSON bodies must be JSON; unknown query parameters are errors, like unknown body fields."""

    DEFAULT_UNKNOWN_BY_LOCATION = {
        **FlaskParser.DEFAULT_UNKNOWN_BY_LOCATION,
        "query": ma.RAISE,
        "querystring": ma.RAISE,
    }

    def load_json(self, req: flask.Request, schema: ma.Schema) -> Any:
        """The decoded body: 415 unless it is JSON, 400 when it is empty or does not decode."""
        if not is_json_request(req):
            abort(415, message="the request body must be JSON (Content-Type: application/json)")
        body = req.get_data(cache=True)  # 413 beyond MAX_CONTENT_LENGTH
        if not body:
            # An empty body is not a JSON document: the same 400 as any other text that
            # does not decode, rather than a 422 listing every field as missing.
            abort(400, message="the request body is empty; send a JSON object", errors={"json": ["empty body"]})
        try:
            return decode_json_body(body)
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
