"""MongoDB: the connection from settings (a real server, or mongomock in-process), the start-up check,
and the one seam for store quirks: each query-form helper returns a form with the same meaning on
MongoDB that nx-27017 0.8.1 (the multi-process tests' server) also gets right (docs/testing.md).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import mongoengine
from pymongo import MongoClient
from pymongo.errors import ConfigurationError, InvalidURI, PyMongoError
from pymongo.monitoring import CommandListener
from pymongo.uri_parser import parse_uri

from jollyjet.settings import Settings

log = logging.getLogger(__name__)


def connect_mongo(settings: Settings, listeners: Sequence[CommandListener] = ()) -> None:
    """(Re)bind mongoengine's one default connection; listeners see every command (the metrics count them)."""
    mongoengine.disconnect()
    common: dict[str, Any] = {"tz_aware": True, "uuidRepresentation": "standard"}
    if settings.embedded_mongo:
        import mongomock

        log.warning("MONGODB_URI is mongomock://: using an in-process store (one process only, not persisted)")
        db = urlsplit(settings.mongodb_uri).path.lstrip("/") or "jollyjet"
        mongoengine.connect(db=db, host="mongodb://localhost", mongo_client_class=mongomock.MongoClient, **common)
        return
    timeout = settings.mongodb_timeout_ms
    mongoengine.connect(
        host=settings.mongodb_uri,
        **common,
        # No connection (nor monitor thread) until the first operation: building the app touches no
        # server, and a process that forks afterwards forks no client threads.
        connect=False,
        # Small timeouts: a dead MongoDB must turn into a quick 503, not a hung worker.
        serverSelectionTimeoutMS=timeout,
        connectTimeoutMS=timeout,
        socketTimeoutMS=socket_timeout_ms(settings),
        event_listeners=list(listeners),
    )


def socket_timeout_ms(settings: Settings) -> int:
    """The longest one MongoDB call may wait for its reply (a write's cache mark outlives it)."""
    return max(settings.mongodb_timeout_ms * 5, 5000)


def mongo_problem(settings: Settings) -> str | None:
    """Why MongoDB cannot be used right now (one line naming the setting and address), or None."""
    if settings.embedded_mongo:
        return None
    timeout = settings.mongodb_timeout_ms
    client: MongoClient[dict[str, object]] = MongoClient(
        settings.mongodb_uri, serverSelectionTimeoutMS=timeout, connectTimeoutMS=timeout
    )
    try:
        client.admin.command("ping")
    except PyMongoError as error:
        reason = str(error).split(",")[0].split(" (configured timeouts")[0][:200]
        return (
            f"cannot reach MongoDB at {_addresses(settings.mongodb_uri)} (MONGODB_URI) "
            f"within {timeout} ms (JOLLYJET_MONGODB_TIMEOUT_MS): {reason}"
        )
    finally:
        client.close()
    return None


def _addresses(uri: str) -> str:
    """host:port of every node in the URI, without credentials (or the SRV name)."""
    try:
        nodes = parse_uri(uri, connect_timeout=1)["nodelist"]
    except (InvalidURI, ConfigurationError, ValueError):
        nodes = []
    return ", ".join(f"{host}:{port}" for host, port in nodes) or "the address in MONGODB_URI"


def array_contains(value: Any) -> dict[str, Any]:
    """Match an array field holding value (nx-27017 misses elements with `{field: value}` on an indexed array)."""
    return {"$in": [value]}


def null_or_missing() -> dict[str, Any]:
    """Match a null or absent field (nx-27017 counts only absent ones for `{field: None}`)."""
    return {"$in": [None]}


def set_to_server_time(*fields: str) -> dict[str, Any]:
    """An update setting fields to the server's clock as dates (nx-27017 stores a `$set` datetime as a string)."""
    return {"$currentDate": {field: True for field in fields}}
