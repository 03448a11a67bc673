"""MongoDB connection from settings (a real server, or mongomock in-process), and the indexes of every collection."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from urllib.parse import urlsplit

import mongoengine
from mongoengine import Document
from pymongo.monitoring import CommandListener

from jollyjet.cache.epoch import CacheEpochRecord
from jollyjet.cache.fence import CacheRepairRecord
from jollyjet.jobs.audit import AuditRun
from jollyjet.ops.jobs import JobStatus
from jollyjet.products.record import ProductDocument
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


# Every collection of the service. Their documents say auto_create_index=False: serving
# never creates an index (a first write would pay for it, and a MongoDB outage at that
# moment would fail the write); `flask --app app ensure-indexes` does, in the release phase.
DOCUMENTS: tuple[type[Document], ...] = (ProductDocument, CacheRepairRecord, AuditRun, JobStatus, CacheEpochRecord)


def ensure_indexes() -> dict[str, int]:
    """Create the declared indexes of every collection (idempotent); how many indexes each collection has now
    (a collection with no declared index and no documents yet does not exist: 0)."""
    counts = {}
    for document in DOCUMENTS:
        document.ensure_indexes()
        collection = document._get_collection()
        counts[collection.name] = len(collection.index_information())
    return counts
