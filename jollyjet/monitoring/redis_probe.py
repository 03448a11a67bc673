"""Redis INFO figures for scrapes and the statistics endpoint, with a short timeout of their own.

A separate client from the request path's pool: no retries, a 250 ms budget, and no
effect on the circuit breaker. A dead Redis makes a scrape report `jollyjet_redis_up 0`
within that budget instead of holding the scrape. This module does not import
prometheus_client.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import redis

log = logging.getLogger(__name__)
PROBE_TIMEOUT_S = 0.25


@dataclass(frozen=True)
class RedisFigures:
    """What INFO said (up=False: Redis did not answer in time)."""

    up: bool
    used_memory: int = 0
    maxmemory: int = 0
    evicted_keys: int = 0
    connected_clients: int = 0

    @property
    def memory_ratio(self) -> float | None:
        """used_memory / maxmemory, or None without a memory limit."""
        return self.used_memory / self.maxmemory if self.maxmemory else None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view."""
        return {
            "up": self.up,
            "used_memory_bytes": self.used_memory,
            "maxmemory_bytes": self.maxmemory,
            "memory_ratio": None if self.memory_ratio is None else round(self.memory_ratio, 4),
            "evicted_keys": self.evicted_keys,
            "connected_clients": self.connected_clients,
        }


class RedisProbe:
    """INFO memory, stats and clients in one round trip."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    @classmethod
    def for_settings(cls, settings: Any) -> RedisProbe | None:
        """A probe of the configured standalone Redis; None in embedded mode and for Sentinel or
        Cluster topologies (their INFO is per node: not sampled yet)."""
        if settings.redis_url is None or settings.redis_topology.value != "standalone":
            return None
        return cls.for_url(settings.redis_url)

    @classmethod
    def for_url(cls, url: str) -> RedisProbe:
        """A probe with its own small, fast-failing connection pool."""
        return cls(
            redis.Redis.from_url(
                url,
                socket_timeout=PROBE_TIMEOUT_S,
                socket_connect_timeout=PROBE_TIMEOUT_S,
                retry_on_timeout=False,
                retry=None,
                max_connections=4,
            )
        )

    def sample(self) -> RedisFigures:
        """Current figures, or RedisFigures(up=False) when Redis does not answer in time."""
        try:
            info: dict[str, Any] = self.client.info()
        except (redis.RedisError, OSError) as error:
            log.debug("redis probe failed: %s", type(error).__name__)
            return RedisFigures(up=False)
        return RedisFigures(
            up=True,
            used_memory=int(info.get("used_memory", 0)),
            maxmemory=int(info.get("maxmemory", 0)),
            evicted_keys=int(info.get("evicted_keys", 0)),
            connected_clients=int(info.get("connected_clients", 0)),
        )
