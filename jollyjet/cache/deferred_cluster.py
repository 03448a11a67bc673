"""A RedisCluster client built on first use, and built again on the next use while that fails.

redis-py's RedisCluster connects in its constructor (it needs the slot map), so a cluster
that is unreachable while a web or worker process starts would stop the process from
starting at all. Standalone and Sentinel clients connect lazily, and the service then
serves from MongoDB until Redis answers; this gives the cluster client the same start-up
behaviour. Failures surface as the cluster client's own errors (RedisClusterException or
a redis ConnectionError) from the call that needed the client, so callers treat them as
any other Redis failure (the circuit breaker counts them).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from redis.cluster import RedisCluster
from redis.commands.core import Script


class DeferredCluster:
    """Stands in for a RedisCluster: every attribute is the built cluster client's."""

    def __init__(self, build: Callable[[], RedisCluster]) -> None:
        self._build = build
        self._cluster: RedisCluster | None = None
        self._lock = threading.Lock()

    def cluster(self) -> RedisCluster:
        """The cluster client, built now if it was not yet (raises what building raises)."""
        cluster = self._cluster
        if cluster is None:
            with self._lock:
                if self._cluster is None:
                    self._cluster = self._build()
                cluster = self._cluster
        return cluster

    def register_script(self, script: str) -> DeferredScript:
        """A callable Lua script that registers with the cluster client on its first call."""
        return DeferredScript(self, script)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cluster(), name)


class DeferredScript:
    """redis-py's Script, made once the cluster client exists; called like one."""

    def __init__(self, client: DeferredCluster, text: str) -> None:
        self._client = client
        self._text = text
        self._script: Script | None = None

    def __call__(self, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> Any:
        if self._script is None:
            self._script = self._client.cluster().register_script(self._text)
        return self._script(keys=list(keys), args=list(args))
