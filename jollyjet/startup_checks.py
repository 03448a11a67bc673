"""Checks a serving process makes before it starts: one clear line instead of a traceback."""

from __future__ import annotations

from pymongo import MongoClient
from pymongo.errors import ConfigurationError, InvalidURI, PyMongoError
from pymongo.uri_parser import parse_uri

from jollyjet.settings import Settings


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
