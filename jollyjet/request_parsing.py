"""Strict request parsing for flask-smorest blueprints: JSON bodies and query strings.

webargs' defaults are lenient where this API must not be: it ignores unknown query
parameters, treats a non-JSON body as "no body", parses JSON numbers as floats and
lets decoder failures other than JSONDecodeError escape as 500s.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any, NoReturn

import flask
import marshmallow as ma
from flask_smorest import Blueprint, abort
from webargs import core
from webargs.flaskparser import FlaskParser, is_json_request

# Lone UTF-16 surrogates are legal as JSON escapes ("\ud800") but not as text:
# MongoDB cannot encode them, so they are refused with the rest of the bad JSON.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _not_json_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


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
    """Strict JSON: UTF-8, no NaN/Infinity, numbers with a fraction as exact Decimals; raises ValueError."""
    document = json.loads(body.decode("utf-8"), parse_float=Decimal, parse_constant=_not_json_constant)
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
        """The decoded body: 415 unless it is JSON, 400 when it does not decode."""
        if not is_json_request(req):
            abort(415, message="the request body must be JSON (Content-Type: application/json)")
        body = req.get_data(cache=True)  # 413 beyond MAX_CONTENT_LENGTH
        if not body:
            return core.missing  # no body: the schema reports the missing fields
        try:
            return decode_json_body(body)
        # ValueError covers JSONDecodeError, UnicodeDecodeError and over-long integers;
        # RecursionError is what the decoder raises on absurdly deep nesting.
        except (ValueError, RecursionError) as error:
            abort(400, exc=error, errors={"json": ["Invalid JSON body."]})


class ApiBlueprint(Blueprint):
    """flask-smorest Blueprint whose @arguments use StrictFlaskParser."""

    ARGUMENTS_PARSER = StrictFlaskParser()
