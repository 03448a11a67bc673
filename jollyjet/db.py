"""MongoDB: the connection from settings (a real server, or mongomock in-process), the start-up check, and the
portable query forms (the collections' indexes: jollyjet/commands.py, ensure_indexes).

The portable forms are the one seam for store quirks. The multi-process tests run on
nx-27017 0.8.1 (a MongoDB wire-protocol server on SQLite, tests/support/mongo_server.py),
which answers three plain MongoDB forms differently. Each helper returns a form with the
same meaning on MongoDB that nx-27017 also gets right, so the repositories stay plain
MongoDB and every workaround is named here (docs/testing.md lists them). When a server
release fixes one, change its helper.
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
    """(Re)bind mongoengine's default connection (process-wide, as mongoengine has one); it connects on first use.

    listeners see every command the client sends (the metrics count them)."""
    mongoengine.disconnect()
    if settings.embedded_mongo:
        import mongomock

        db = urlsplit(settings.mongodb_uri).path.lstrip("/") or "jollyjet"
        log.warning("MONGODB_URI is mongomock://: using an in-process store (one process only, not persisted)")
        mongoengine.connect(
            db=db,
            host="mongodb://localhost",
            mongo_client_class=mongomock.MongoClient,
            tz_aware=True,
            uuidRepresentation="standard",
        )
        return
    timeout = settings.mongodb_timeout_ms
    mongoengine.connect(
        host=settings.mongodb_uri,
        tz_aware=True,
        uuidRepresentation="standard",
        # No connection (nor monitor thread) until the first operation: building the app
        # touches no server, and a process that forks afterwards forks no client threads.
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


def mongo_addresses(uri: str) -> str:
    """host:port of every node in the URI, without credentials (or the SRV name)."""
    try:
        nodes = parse_uri(uri, connect_timeout=1)["nodelist"]
    except (InvalidURI, ConfigurationError, ValueError):
        return "the address in MONGODB_URI"
    return ", ".join(f"{host}:{port}" for host, port in nodes) or "the address in MONGODB_URI"


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
            f"cannot reach MongoDB at {mongo_addresses(settings.mongodb_uri)} (MONGODB_URI) "
            f"within {timeout} ms (JOLLYJET_MONGODB_TIMEOUT_MS): {reason}"
        )
    finally:
        client.close()
    return None


def array_contains(value: Any) -> dict[str, Any]:
    """Match an array field holding value.

    MongoDB reads `{field: value}` the same way (and uses the index for `$in` of one
    value too); nx-27017 misses elements with the plain form on an indexed array field.
    """
    return {"$in": [value]}


def null_or_missing() -> dict[str, Any]:
    """Match a field that is null or absent.

    MongoDB reads `{field: None}` the same way; nx-27017 counts only documents without
    the field for that plain form.
    """
    return {"$in": [None]}


def set_to_server_time(*fields: str) -> dict[str, Any]:
    """An update setting fields to the server's clock, stored as a date (millisecond precision).

    A datetime sent with `$set` is stored as a string by nx-27017; `$currentDate` is a
    date on every server, and the server's clock is the one MongoDB itself uses.
    """
    return {"$currentDate": {field: True for field in fields}}
