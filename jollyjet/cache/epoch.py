"""Serve nothing from a Redis that may not hold what we wrote: restarts, snapshot restores, failovers.

A Redis server's *identity* is its `run_id` (new at every start) and its replication
id `master_replid` (new when a replica is promoted, and taken from the new master when
a server starts replicating). While the identity stays the same, the server's data
only moves forward: every write it acknowledged is still there, unless deleted
(FLUSHALL, eviction, TTL), and a missing key is only a miss. When the identity
changes, the server may hold anything: an old RDB snapshot, a lagging replica's data,
an empty dataset whose list generation restarted.

So every new connection (the hook `build_redis_client(on_connect=...)` runs this right
after the handshake, before the connection carries a command) reads the identity with
one `INFO server replication`. An identity this service has verified before is
trusted. An unknown one starts a new *cache epoch*: this service's cached data on that
server (`<prefix>:*`, every schema; job locks, beat claims and read counts stay) is deleted through
that very connection (SCAN + UNLINK),
and only then is the identity recorded as trusted, in MongoDB: the source of truth,
which every web and worker process shares and which outlives Redis. A process that
was idle through a restart learns of it at its next command: its pooled connections
are dead, redis-py reconnects, and the new connection is checked before the command
is sent on it.

Deleting is always safe here (the guards never rely on a key being present: a missing
lease refuses a fill, a missing generation restarts from the server clock), so several
processes verifying the same new server at once may each delete; none serves a hit
from it before its own check has passed. A connection whose check cannot finish
(MongoDB unreachable with an unknown identity, Redis failing mid-delete) fails with a
redis ConnectionError: the request reads MongoDB instead, as for any Redis failure.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime

from mongoengine import DateTimeField, Document, IntField, ListField, StringField
from pymongo.errors import PyMongoError
from redis.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError

from jollyjet.cache.events import CacheEvents
from jollyjet.cache.keys import survives_new_epoch

log = logging.getLogger(__name__)
_SCAN_BATCH = 1000
# How long a new connection waits for another connection of this process to finish
# verifying; longer, and it fails like any Redis error (the request reads MongoDB).
VERIFY_WAIT_S = 1.0


class UnverifiedCacheServer(RedisConnectionError):
    """The Redis server on this connection could not be verified; the connection is not used."""


class CacheEpochRecord(Document):
    """The Redis identities verified for one key prefix, and how many epochs there were."""

    meta = {"collection": "cache_epochs", "auto_create_index": False}

    id = StringField(primary_key=True)  # the cache key prefix: one record per cache namespace
    servers = ListField(StringField())
    epoch = IntField(default=0)
    updated_at = DateTimeField()


class TrustedServers:
    """The MongoDB side: which server identities have been verified for this prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def is_trusted(self, identity: str) -> bool:
        """One query: has any process verified this identity?"""
        found = CacheEpochRecord._get_collection().find_one({"_id": self.prefix}, {"servers": 1})
        return bool(found) and identity in found.get("servers", [])

    def trust(self, identity: str) -> None:
        """Record the identity as verified (its old keys are gone) and count a new epoch."""
        CacheEpochRecord._get_collection().update_one(
            {"_id": self.prefix},
            {"$addToSet": {"servers": identity}, "$inc": {"epoch": 1}, "$set": {"updated_at": datetime.now(UTC)}},
            upsert=True,
        )

    def current_epoch(self) -> int:
        """How many server changes this prefix has been through (0 before the first)."""
        found = CacheEpochRecord._get_collection().find_one({"_id": self.prefix}, {"epoch": 1})
        return int(found.get("epoch", 0)) if found else 0


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def server_identity(connection: AbstractConnection) -> str:
    """`<run_id>/<master_replid>` of the server at the other end of a fresh connection."""
    connection.send_command("INFO", "server", "replication")
    fields = dict(line.split(":", 1) for line in _text(connection.read_response()).splitlines() if ":" in line)
    run_id, replid = fields.get("run_id", "").strip(), fields.get("master_replid", "").strip()
    if not run_id:
        raise UnverifiedCacheServer("INFO did not report a run_id")
    return f"{run_id}/{replid}"


def delete_cached_data(connection: AbstractConnection, pattern: str) -> int:
    """SCAN + UNLINK the cached data matching pattern on this one server; returns how many keys were deleted.

    Job locks, beat claims and read counts stay (keys.survives_new_epoch): nothing in
    them is served, and deleting a lock or claim would let a job or a beat slot run
    twice. One UNLINK
    per key (pipelined), never a multi-key one: on a cluster node the keys of one
    SCAN batch belong to different slots.
    """
    deleted = 0
    cursor: bytes | str | int = 0
    while True:
        connection.send_command("SCAN", cursor, "MATCH", pattern, "COUNT", _SCAN_BATCH)
        cursor, found = connection.read_response()
        keys = [key for key in found if not survives_new_epoch(_text(key))]
        if keys:
            connection.send_packed_command(connection.pack_commands([("UNLINK", key) for key in keys]))
            deleted += sum(int(connection.read_response()) for _ in keys)
        if int(cursor) == 0:
            return deleted


class CacheEpochGuard:
    """The on_connect hook: verifies each new connection's server before it is used."""

    def __init__(self, prefix: str, events: CacheEvents, store: TrustedServers | None = None) -> None:
        self.pattern = f"{prefix}:*"
        self.store = store or TrustedServers(prefix)
        self.events = events
        # Identities this process has verified or seen verified: no MongoDB query for
        # them again (an identity's data never moves backwards, see the module docs).
        self._trusted: set[str] = set()
        self._lock = threading.Lock()
        self.epochs_started = 0

    def __call__(self, connection: AbstractConnection) -> None:
        """Check the server behind a new connection; start a new epoch on it if it is unknown."""
        identity = server_identity(connection)
        if identity in self._trusted:
            return
        # One verification at a time in this process: the other new connections wait
        # (bounded) for it instead of each deleting the same keys.
        if not self._lock.acquire(timeout=VERIFY_WAIT_S):
            raise UnverifiedCacheServer("another connection of this process is still verifying the Redis server")
        try:
            if identity in self._trusted:
                return
            try:
                if self.store.is_trusted(identity):
                    self._trusted.add(identity)
                    return
            except PyMongoError as error:
                raise UnverifiedCacheServer(f"cannot read the verified Redis servers from MongoDB: {error}") from error
            deleted = delete_cached_data(connection, self.pattern)
            try:
                self.store.trust(identity)
            except PyMongoError as error:
                raise UnverifiedCacheServer(f"cannot record the verified Redis server in MongoDB: {error}") from error
            self._trusted.add(identity)
            self.epochs_started += 1
        finally:
            self._lock.release()
        self.events.emit("epoch_started", "server")
        log.warning(
            "new Redis server identity %s: deleted %d keys of this service before using it (new cache epoch)",
            identity,
            deleted,
        )
