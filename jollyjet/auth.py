"""Bearer-token authentication for writes and admin endpoints."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from flask import current_app, request
from flask_smorest import abort

F = TypeVar("F", bound=Callable[..., Any])


def token_is_valid(presented: str, accepted: tuple[str, ...]) -> bool:
    """Constant-time comparison against every accepted token (no early exit)."""
    given = presented.encode()
    matched = False
    for token in accepted:
        matched |= hmac.compare_digest(given, token.encode())
    return matched


def require_token(view: F) -> F:
    """401 unless the request carries `Authorization: Bearer <token>` with an accepted token."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        accepted: tuple[str, ...] = current_app.config["JOLLYJET_API_TOKENS"]
        if scheme.lower() != "bearer" or not presented or not token_is_valid(presented.strip(), accepted):
            abort(
                401,
                message="a valid 'Authorization: Bearer <token>' header is required",
                headers={"WWW-Authenticate": 'Bearer realm="jollyjet"'},
            )
        return view(*args, **kwargs)

    # How the failed-authentication rate limit finds the views that authenticate (jollyjet/rate_limits.py).
    wrapper.requires_token = True  # type: ignore[attr-defined]
    return cast(F, wrapper)
