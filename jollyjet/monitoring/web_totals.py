"""Each web server's metric totals, published in Redis for the threshold job (which runs in the worker).

The worker cannot read the web's multiprocess files (another process group, often
another host), so every web process's sampler writes its group's totals under one
key per server (same value from each worker of a group, so overwriting is harmless),
with a TTL: a server that stops publishing drops out within a minute.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable

import redis

from jollyjet.cache.keys import CacheKeys
from jollyjet.monitoring.history import Totals, add_totals
from jollyjet.monitoring.process_dir import multiprocess_dir

log = logging.getLogger(__name__)
TTL_S = 60


def server_id() -> str:
    """This server's id: one per host and metrics directory (all workers of one gunicorn share it)."""
    group = f"{socket.gethostname()}:{multiprocess_dir() or os.getpid()}"
    return hashlib.blake2b(group.encode(), digest_size=8).hexdigest()


def publisher(client: redis.Redis, keys: CacheKeys) -> Callable[[Totals], None]:
    """A function that stores totals under this server's key (Redis errors are only logged at debug level)."""
    key = keys.web_totals(server_id())

    def publish(totals: Totals) -> None:
        try:
            client.set(key, json.dumps(totals.as_json(time.time())), ex=TTL_S)
        except (redis.RedisError, OSError) as error:
            # Redis down is reported by its own alert; no warning every 10 s per process.
            log.debug("could not publish metric totals: %s", type(error).__name__)

    return publish


def published_totals(client: redis.Redis, keys: CacheKeys) -> Totals | None:
    """The sum of every live web server's totals (None when none publishes; raises on Redis errors)."""
    found = [client.get(key) for key in client.scan_iter(match=keys.web_totals_pattern(), count=100)]
    parts = [Totals.from_json(json.loads(raw)) for raw in found if raw]
    return add_totals(parts, time.time()) if parts else None
