"""Serve nothing from a Redis that may not hold what we wrote: restarts, snapshot restores, failovers.

A server's identity (`run_id`/`master_replid`) stays the same while its data only moves forward.
MongoDB holds each shard's one *current* identity per key prefix. A new connection to a server
that is not current starts a new *cache epoch*: our keys on it are deleted, then it is made current.
A connection is used only while a view of that record under `max_age_s` old names its server, and a
server that replaced another waits `max_age_s` (CacheServerSettling). The argument: docs/reliability.md.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mongoengine import DateTimeField, DictField, Document, IntField, StringField
from mongoengine.connection import ConnectionFailure as MongoEngineConnectionFailure
from pymongo.errors import PyMongoError
from redis.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError

from jollyjet.cache.keys import CacheKeys, schema_of, survives_new_epoch
from jollyjet.cache.store import CacheBackend, CacheServerSettling

log = logging.getLogger(__name__)
# How long a new connection waits for another of this process to finish verifying; then it fails like any Redis error.
VERIFY_WAIT_S = 1.0
_MONGO_ERRORS = (PyMongoError, MongoEngineConnectionFailure)  # mongoengine's: no connection configured
_TAG = "jollyjet_server"  # the attribute of a redis-py connection holding the ServerTag it was verified as


class UnverifiedCacheServer(RedisConnectionError):
    """The Redis server on this connection could not be verified; the connection is not used."""


class CacheEpochRecord(Document):
    """The current Redis identity of each shard for one key prefix, and how many epochs there were."""

    meta = {"collection": "cache_epochs", "auto_create_index": False}
    id = StringField(primary_key=True)  # the cache key prefix
    current = DictField()  # shard -> {"id": identity, "settled": bool}
    epoch = IntField(default=0)
    updated_at = DateTimeField()


@dataclass(frozen=True)
class ServerTag:
    """What a connection was verified as: its shard and its server's identity."""

    shard: str
    identity: str


@dataclass(frozen=True)
class CurrentServer:
    identity: str
    settled: bool  # every process has had time to stop using the server it replaced


class CurrentServers:
    """The MongoDB side: the current server identity of each shard of this prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def read(self) -> dict[str, CurrentServer]:
        """One query: every shard's current identity."""
        found = CacheEpochRecord._get_collection().find_one({"_id": self.prefix}, {"current": 1}) or {}
        current = found.get("current")
        return {
            shard: CurrentServer(str(value.get("id", "")), bool(value.get("settled")))
            for shard, value in (current.items() if isinstance(current, dict) else ())
            if isinstance(value, dict)
        }

    def replace(self, tag: ServerTag, settled: bool) -> None:
        """Make tag's identity the current one of its shard (its old keys are gone) and count a new epoch."""
        current = {f"current.{tag.shard}": {"id": tag.identity, "settled": settled}, "updated_at": datetime.now(UTC)}
        CacheEpochRecord._get_collection().update_one(
            {"_id": self.prefix}, {"$set": current, "$inc": {"epoch": 1}}, upsert=True
        )

    def settle(self, tag: ServerTag) -> None:
        """Mark the identity settled, if it is still the current one of its shard."""
        CacheEpochRecord._get_collection().update_one(
            {"_id": self.prefix, f"current.{tag.shard}.id": tag.identity},
            {"$set": {f"current.{tag.shard}.settled": True}},
        )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _command(connection: AbstractConnection, *args: Any) -> Any:
    connection.send_command(*args)
    return connection.read_response()


def probe_server(connection: AbstractConnection, cluster: bool) -> tuple[ServerTag, str]:
    """(shard and identity, role) of the server at the other end of a fresh connection."""
    info = _text(_command(connection, "INFO", "server", "replication"))
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    run_id, replid = fields.get("run_id", "").strip(), fields.get("master_replid", "").strip()
    if not run_id:
        raise UnverifiedCacheServer("INFO did not report a run_id")
    # A standalone or Sentinel-managed server is the one shard "all".
    shard = cluster_shard(_text(_command(connection, "CLUSTER", "NODES"))) if cluster else "all"
    return ServerTag(shard, f"{run_id}/{replid}"), fields.get("role", "").strip()


def cluster_shard(nodes: str) -> str:
    """A cluster master's shard: its first slot range, which a promoted replica takes over unchanged."""
    for line in nodes.splitlines():
        parts = line.split()
        if len(parts) >= 8 and "myself" in parts[2].split(","):
            slots = [part for part in parts[8:] if not part.startswith("[")]  # "[slot->-node]": migrating
            return f"slots-{slots[0]}" if slots else f"node-{parts[0]}"
    raise UnverifiedCacheServer("CLUSTER NODES did not report this node")


def delete_cached_data(batches: Iterable[Sequence[str]], unlink: Callable[..., int]) -> int:
    """Unlink (`unlink(*keys)`) our cached data from SCAN batches of `CacheKeys.service_pattern()`; returns how many.

    The one way the cache is emptied (a new epoch, drop-cache). Every schema goes; job locks, beat
    claims and read counts stay (keys.survives_new_epoch): none is served, deleting a lock or claim
    would run a job or beat slot twice, and warming needs the counts to refill what was dropped. Safe
    while serving: a fill that read before lost its lease; a generation restarts above every old one.
    """
    deleted = 0
    for batch in batches:
        # The glob `<prefix>:v*` also matches e.g. `<prefix>:visits`: only `<prefix>:v<N>:` keys are ours.
        keys = [key for key in batch if schema_of(key) is not None and not survives_new_epoch(key)]
        if keys:
            deleted += unlink(*keys)
    return deleted


def drop_cached_data(store: CacheBackend, keys: CacheKeys, batch: int) -> int:
    """delete_cached_data over the store, SCAN batches of `batch`: the drop-cache command and endpoint."""
    return delete_cached_data(store.scan(keys.service_pattern(), batch), store.delete)


def _scan(connection: AbstractConnection, pattern: str) -> Iterator[list[str]]:
    cursor: bytes | str | int = 0
    while True:
        cursor, found = _command(connection, "SCAN", cursor, "MATCH", pattern, "COUNT", 1000)
        yield [_text(key) for key in found]
        if int(cursor) == 0:
            return


def _unlink_each(connection: AbstractConnection, *keys: str) -> int:
    # One UNLINK per key (pipelined): on a cluster node the keys of one SCAN batch are in different slots.
    connection.send_packed_command(connection.pack_commands([("UNLINK", key) for key in keys]))
    return sum(int(connection.read_response()) for _ in keys)


@dataclass(frozen=True)
class _View:
    started_at: float  # when the query that read it began: it is judged by its oldest possible moment
    servers: Mapping[str, CurrentServer]


def _current_as(tag: ServerTag | None, view: _View) -> CurrentServer | None:
    """The current server of tag's shard in view, if it is the one tag names."""
    current = view.servers.get(tag.shard) if tag is not None else None
    return current if current is not None and tag is not None and current.identity == tag.identity else None


class CacheEpochGuard:
    """Verifies each new connection's server (the on_connect hook) and fences every use of a connection (check)."""

    def __init__(
        self,
        prefix: str,
        poll_s: float,
        *,
        cluster: bool = False,
        store: CurrentServers | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pattern = CacheKeys(prefix).service_pattern()
        self.store = store or CurrentServers(prefix)
        self.cluster = cluster
        self.poll_s = poll_s
        self.max_age_s = 2 * poll_s  # a view may be one poll late (a slow query, a busy CPU)
        self._clock = clock
        self._view: _View | None = None
        self._settles_at: dict[ServerTag, float] = {}  # a server seen replacing another -> when it may be used
        self._seen: dict[str, str] = {}  # shard -> the identity this process last saw current
        self._verifying = threading.Lock()
        self._refreshing = threading.Lock()
        self.epochs_started = 0

    def refresh(self) -> None:
        """One query: the current servers. Errors are logged; the old view ages out by itself."""
        try:
            self._read_view()
        except Exception as error:  # any driver error: a poll never dies
            log.warning("cache epoch: could not read the current Redis servers: %s", error)

    def _read_view(self) -> None:
        started = self._clock()
        self._install_view(_View(started, self.store.read()))

    def _install_view(self, view: _View) -> None:
        if self._view is not None and view.started_at < self._view.started_at:
            return
        now = self._clock()
        for shard, server in view.servers.items():
            seen = self._seen.get(shard)
            if seen is not None and seen != server.identity and not server.settled:
                # This process may have used the old server until now; others until their views age out.
                self._settles_at.setdefault(ServerTag(shard, server.identity), now + self.max_age_s)
            self._seen[shard] = server.identity
        self._view = view

    def _fresh_view(self) -> _View:
        view = self._view
        if view is None or self._clock() - view.started_at > 1.5 * self.poll_s:
            # The poll is late or idle: one request refreshes, the others use the view they have.
            if self._refreshing.acquire(blocking=False):
                try:
                    self.refresh()
                finally:
                    self._refreshing.release()
            view = self._view
        if view is None or self._clock() - view.started_at > self.max_age_s:
            raise CacheServerSettling("no recent view of the current Redis server (MongoDB unreachable?)")
        return view

    def check(self, connection: AbstractConnection) -> None:
        """May this connection carry a command now? Reconnects (and verifies) one to a server no longer current."""
        tag: ServerTag | None = getattr(connection, _TAG, None)
        current = _current_as(tag, self._fresh_view())
        if tag is None or current is None:
            connection.disconnect()
            connection.connect()  # runs __call__: finds the server the pool now points at, verifies it
            tag = getattr(connection, _TAG, None)
            current = _current_as(tag, self._fresh_view())
            if tag is None or current is None:
                raise UnverifiedCacheServer("the Redis server is not the current one of its shard")
        if current.settled:
            return
        settles_at = self._settles_at.get(tag)
        if settles_at is None:  # first seen unsettled with no older identity seen here: others may use the old one
            settles_at = self._settles_at.setdefault(tag, self._clock() + self.max_age_s)
        if self._clock() < settles_at:
            raise CacheServerSettling("a new Redis server is waiting for every process to stop using the old one")
        try:
            self.store.settle(tag)
        except _MONGO_ERRORS as error:
            raise CacheServerSettling(f"cannot mark the new Redis server settled in MongoDB: {error}") from error
        self.refresh()

    def __call__(self, connection: AbstractConnection) -> None:
        """Verify the server behind a new connection; start a new epoch on it if it is not current."""
        tag, role = probe_server(connection, self.cluster)
        if role != "master":
            raise UnverifiedCacheServer(f"the Redis server is a {role or 'server of unknown role'}, not a master")
        if not self._is_current(tag, refresh=False):
            # One verification at a time in this process: the others wait (bounded) instead of deleting too.
            if not self._verifying.acquire(timeout=VERIFY_WAIT_S):
                raise UnverifiedCacheServer("another connection of this process is still verifying the Redis server")
            try:
                if not self._is_current(tag, refresh=True):
                    self._start_epoch(connection, tag)
            finally:
                self._verifying.release()
        setattr(connection, _TAG, tag)

    def _is_current(self, tag: ServerTag, refresh: bool) -> bool:
        if refresh:
            try:
                self._read_view()
            except _MONGO_ERRORS as error:
                raise UnverifiedCacheServer(f"cannot read the current Redis servers from MongoDB: {error}") from error
        return self._view is not None and _current_as(tag, self._view) is not None

    def _start_epoch(self, connection: AbstractConnection, tag: ServerTag) -> None:
        deleted = delete_cached_data(_scan(connection, self.pattern), functools.partial(_unlink_each, connection))
        assert self._view is not None  # _is_current(refresh=True) installed one
        replaced = self._view.servers.get(tag.shard)
        started = self._clock()
        try:
            # Where no server was current, nobody can be using another one: settled from the start.
            self.store.replace(tag, settled=replaced is None)
        except _MONGO_ERRORS as error:
            raise UnverifiedCacheServer(f"cannot record the new Redis server in MongoDB: {error}") from error
        if replaced is not None:
            self._settles_at[tag] = self._clock() + self.max_age_s
        current = CurrentServer(tag.identity, settled=replaced is None)
        self._install_view(_View(started, {**self._view.servers, tag.shard: current}))
        self.epochs_started += 1
        log.warning(
            "new Redis server identity %s (shard %s): deleted %d keys of this service before using it "
            "(new cache epoch)",
            tag.identity,
            tag.shard,
            deleted,
        )
