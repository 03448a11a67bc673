"""Settings of the Redis topologies beyond one server: Sentinel and Cluster (mixed into Settings).

Standalone and Cluster name their server with REDIS_URL (for a cluster: any node;
the client discovers the others), and carry credentials and TLS in it
(`rediss://user:password@host:port`). Sentinel has no single URL: the client asks the
sentinels where the master is, so its credentials and TLS are settings of their own.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings

from jollyjet.job_settings import env


class RedisTopology(StrEnum):
    STANDALONE = "standalone"
    SENTINEL = "sentinel"
    CLUSTER = "cluster"


_HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])$")
_SENTINEL_ONLY = (
    ("redis_sentinels_raw", "JOLLYJET_REDIS_SENTINELS"),
    ("redis_sentinel_master", "JOLLYJET_REDIS_SENTINEL_MASTER"),
    ("redis_username", "JOLLYJET_REDIS_USERNAME"),
    ("redis_password", "JOLLYJET_REDIS_PASSWORD"),
    ("redis_sentinel_password", "JOLLYJET_REDIS_SENTINEL_PASSWORD"),
    ("redis_tls_ca_file", "JOLLYJET_REDIS_TLS_CA_FILE"),
)


def parse_sentinels(raw: str) -> tuple[tuple[str, int], ...]:
    """`host:port,host:port` → ((host, port), ...); raises ValueError naming the bad entry."""
    found = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if not sep or not _HOST.match(host) or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"{item!r} is not host:port (port 1-65535)")
        found.append((host.strip("[]"), int(port)))
    if len(set(found)) != len(found):
        raise ValueError("a sentinel is listed twice")
    return tuple(found)


class RedisTopologySettings(BaseSettings):
    """Sentinel discovery, its credentials and TLS. Field aliases are the environment variable names."""

    redis_topology: RedisTopology = Field(RedisTopology.STANDALONE, validation_alias=env("JOLLYJET_REDIS_TOPOLOGY"))
    redis_sentinels_raw: str = Field("", validation_alias=env("JOLLYJET_REDIS_SENTINELS"))
    redis_sentinel_master: str = Field(
        "", pattern=r"^([A-Za-z0-9_.-]{1,64})?$", validation_alias=env("JOLLYJET_REDIS_SENTINEL_MASTER")
    )
    redis_username: str | None = Field(None, min_length=1, validation_alias=env("JOLLYJET_REDIS_USERNAME"))
    redis_password: SecretStr | None = Field(None, validation_alias=env("JOLLYJET_REDIS_PASSWORD"))
    redis_sentinel_password: SecretStr | None = Field(None, validation_alias=env("JOLLYJET_REDIS_SENTINEL_PASSWORD"))
    redis_tls: bool = Field(False, validation_alias=env("JOLLYJET_REDIS_TLS"))
    redis_tls_ca_file: str | None = Field(None, min_length=1, validation_alias=env("JOLLYJET_REDIS_TLS_CA_FILE"))
    # kombu's Sentinel transport finds the broker's master by this name (sentinel:// URLs).
    celery_sentinel_master: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_.-]{1,64}$", validation_alias=env("CELERY_SENTINEL_MASTER")
    )
    # The sentinels' own password for those URLs (the master's goes in the URL: sentinel://:pw@host:port).
    celery_sentinel_password: SecretStr | None = Field(None, validation_alias=env("CELERY_SENTINEL_PASSWORD"))

    @field_validator("redis_sentinels_raw")
    @classmethod
    def _sentinels_are_host_port(cls, value: str) -> str:
        parse_sentinels(value)
        return value

    @property
    def redis_sentinels(self) -> tuple[tuple[str, int], ...]:
        """The sentinels to ask for the master, as (host, port) pairs."""
        return parse_sentinels(self.redis_sentinels_raw)

    def topology_problem(self, redis_url: str | None) -> str | None:
        """Why the topology settings do not fit together (the message starts with the variable), or None."""
        topology = self.redis_topology
        if topology is RedisTopology.SENTINEL:
            if not self.redis_sentinels:
                return "JOLLYJET_REDIS_SENTINELS: required with JOLLYJET_REDIS_TOPOLOGY=sentinel (host:port,...)"
            if not self.redis_sentinel_master:
                return "JOLLYJET_REDIS_SENTINEL_MASTER: required with JOLLYJET_REDIS_TOPOLOGY=sentinel"
            if redis_url is not None:
                return "REDIS_URL: not used with sentinel (the sentinels name the master); unset it"
            if self.redis_tls_ca_file and not self.redis_tls:
                return "JOLLYJET_REDIS_TLS_CA_FILE: only used with JOLLYJET_REDIS_TLS=true"
            return None
        for field, name in _SENTINEL_ONLY:
            if _is_set(getattr(self, field)):
                return f"{name}: only used with JOLLYJET_REDIS_TOPOLOGY=sentinel (standalone and cluster use REDIS_URL)"
        if self.redis_tls:
            return "JOLLYJET_REDIS_TLS: only used with sentinel; use a rediss:// REDIS_URL"
        if topology is RedisTopology.CLUSTER:
            if redis_url is None:
                return "REDIS_URL: required with JOLLYJET_REDIS_TOPOLOGY=cluster (any node of the cluster)"
            if redis_url.startswith("unix://"):
                return "REDIS_URL: a cluster is reached over TCP (redis:// or rediss://), not unix://"
        return None


def _is_set(value: Any) -> bool:
    return value not in (None, "")
