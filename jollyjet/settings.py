"""Every setting of the service, from environment variables, validated once at start-up.

A value nobody tunes is a named constant here instead. A missing or junk value raises
SettingsError naming the variable; docs/configuration.md lists them all.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from enum import StrEnum
from importlib.util import find_spec
from typing import Any
from urllib.parse import parse_qsl, unquote

from pydantic import AliasChoices, Field, SecretStr, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

EMBEDDED_MONGODB_URI = "mongomock://localhost/jollyjet"
DEV_TOKEN = "dev-token"  # noqa: S105 - a documented, well-known development-only token
# Fixed values that were settings nobody tuned (the cache's and the bulkhead's: jollyjet/app_factory.py).
REDIS_RETRIES = 1  # retries of a Redis call on connection errors and timeouts (5-50 ms backoff)
REDIS_POOL_TIMEOUT_MS = 100  # how long a request waits for a free Redis connection
REDIS_HEALTH_CHECK_INTERVAL_S = 15  # idle Redis connections are checked with PING after this long
REDIS_POOL_SIZE = 32  # Redis connections per process (a bounded, blocking pool; per node in a cluster)
BREAKER_FAILURES = 3  # consecutive Redis failures that open the circuit breaker
CELERY_MAX_RETRIES = 5  # retries of a job after transient Redis/MongoDB errors
JOB_PUBLISH_TIMEOUT_S = 3.0  # how long an admin request waits for the broker to take a job before its 503
CELERY_RESULT_EXPIRES_S = 86400  # how long task states and reports are kept
WARM_TOP_PRODUCTS = 500  # most-read products the warming job keeps cached
WARM_TOP_QUERIES = 20  # most-read list queries whose first page it keeps cached
CLEANUP_SCAN_BATCH = 500  # SCAN COUNT and deletion batch (cleanup, DELETE /api/v1/cache)
POPULARITY_MAX_MEMBERS = 10000  # members cleanup keeps in each popularity set
REPAIR_RETENTION_DAYS = 7  # repaired records older than this are purged by cleanup
REPAIR_BATCH = 500  # failed-write records replayed per repair run
AUDIT_SAMPLE_RATE = 0.2  # probability that a cached entry is checked in sample mode
AUDIT_MAX_KEYS = 20000  # entries one audit run checks at most
AUDIT_BATCH = 200  # entries per SCAN / pipelined read / MongoDB query of the audit
AUDIT_REPAIR = True  # the audit repairs the drift it finds (False: report only)
AUDIT_HISTORY = 100  # audit runs kept in MongoDB
WARM_INTERVAL_S = 300  # how often beat schedules the cache warming
CLEANUP_INTERVAL_S = 3600  # how often beat schedules the TTL cleanup
JOBS = ("warm", "cleanup", "audit", "repair")  # what JOLLYJET_JOBS_OFF may name
# Read by earlier releases (REDIS_URL carries them now): left set, the cache would silently connect elsewhere.
_RETIRED = ("JOLLYJET_REDIS_TOPOLOGY", "JOLLYJET_REDIS_SENTINELS", "JOLLYJET_REDIS_TLS")
_REDIS = ("redis://", "rediss://")
_SENTINEL_URL = ("redis+sentinel://", "rediss+sentinel://")
_CLUSTER_URL = ("redis+cluster://", "rediss+cluster://")
_SCHEMES = {
    "mongodb_uri": ("mongodb://", "mongodb+srv://", "mongomock://"),
    "redis_url": (*_REDIS, *_CLUSTER_URL, *_SENTINEL_URL, "unix://"),
    "celery_broker_url": ("redis://", "rediss://", "unix://", "sentinel://", "amqp://", "amqps://", "memory://"),
    "celery_result_backend": ("redis://", "rediss://", "unix://", "sentinel://", "cache+memory://"),
    "rate_limit_storage_uri": ("memory://", *_REDIS, "redis+unix://", "redis+sentinel://", "redis+cluster://"),
}
# What a browser sends in Origin. "*" is refused on purpose: requests carry a token, so each origin is named.
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?")
_ADDRESS = r"^((?P<host>[A-Za-z0-9.:\[\]-]+):(?P<port>\d{1,5}))?$"  # HOST:PORT, or empty
_HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])$")
_NAME = r"^[A-Za-z0-9_.-]{1,64}$"  # a Redis master's or a Celery queue's name


def _env(variable: str, default: Any, **constraints: Any) -> Any:  # a field read from one environment variable
    return Field(default, validation_alias=AliasChoices(variable), **constraints)


def _items(raw: str) -> list[str]:  # a comma-separated list, blanks dropped
    return [item.strip() for item in raw.split(",") if item.strip()]


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TESTING = "testing"
    PRODUCTION = "production"


class RedisTopology(StrEnum):
    STANDALONE = "standalone"
    SENTINEL = "sentinel"
    CLUSTER = "cluster"


class AuditMode(StrEnum):
    SAMPLE = "sample"
    FULL = "full"


class LogFormat(StrEnum):
    AUTO = "auto"
    JSON = "json"
    TEXT = "text"


class SettingsError(RuntimeError):
    """A setting is missing or malformed; the message names the variable."""


def parse_sentinels(raw: str) -> tuple[tuple[str, int], ...]:
    """`host:port,host:port` → ((host, port), ...); raises ValueError naming the bad entry."""
    found = []
    for item in _items(raw):
        host, sep, port = item.rpartition(":")
        if not sep or not _HOST.match(host) or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"{item!r} is not host:port (port 1-65535)")
        found.append((host.strip("[]"), int(port)))
    if len(set(found)) != len(found):
        raise ValueError("a sentinel is listed twice")
    if not found:
        raise ValueError("no sentinel listed (host:port,host:port)")
    return tuple(found)


@dataclass(frozen=True)
class SentinelTarget:
    """What a redis+sentinel:// or rediss+sentinel:// REDIS_URL names (docs/redis-topologies.md)."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    username: str | None
    password: str | None = field(repr=False)
    sentinel_password: str | None = field(repr=False)
    tls: bool
    ca_file: str | None


def parse_sentinel_url(url: str) -> SentinelTarget:
    """`redis[s]+sentinel://[[user]:password@]host:port,.../master[?sentinel_password=..&ssl_ca_certs=..]`."""
    scheme, _, rest = url.partition("://")
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    master = path.strip("/")
    if not re.match(_NAME, master):
        raise ValueError("name the master after the sentinels: redis+sentinel://host:port,host:port/master")
    options = dict(parse_qsl(query, keep_blank_values=True))
    if unknown := sorted(set(options) - {"sentinel_password", "ssl_ca_certs"}):
        raise ValueError(f"unknown option {unknown[0]!r} (sentinel_password, ssl_ca_certs)")
    tls = scheme == "rediss+sentinel"
    if "ssl_ca_certs" in options and not tls:
        raise ValueError("ssl_ca_certs is only used with rediss+sentinel://")
    return SentinelTarget(
        sentinels=parse_sentinels(hosts),
        master=master,
        username=unquote(username) or None if at else None,
        password=unquote(password) or None if at else None,
        sentinel_password=options.get("sentinel_password") or None,
        tls=tls,
        ca_file=options.get("ssl_ca_certs") or None,
    )


class Settings(BaseSettings):
    """Every knob of the service. Field aliases are the environment variable names."""

    model_config = SettingsConfigDict(populate_by_name=True, extra="ignore", frozen=True)

    # --- The service: environment, MongoDB, the HTTP API, logs and metrics exporters
    env: Environment = _env("JOLLYJET_ENV", Environment.DEVELOPMENT)
    mongodb_uri: str = _env("MONGODB_URI", EMBEDDED_MONGODB_URI)
    mongodb_timeout_ms: int = _env("JOLLYJET_MONGODB_TIMEOUT_MS", 2000, ge=50, le=60000)
    api_tokens_raw: str = _env("JOLLYJET_API_TOKENS", "", repr=False)
    max_body_bytes: int = _env("JOLLYJET_MAX_BODY_BYTES", 65536, ge=1024, le=16 * 1024 * 1024)
    max_page_size: int = _env("JOLLYJET_MAX_PAGE_SIZE", 100, ge=1, le=1000)
    max_page: int = _env("JOLLYJET_MAX_PAGE", 10000, ge=1, le=1_000_000)
    cors_origins_raw: str = _env("JOLLYJET_CORS_ORIGINS", "")  # browser origins allowed (CORS); empty: CORS off
    # Staleness browsers and CDNs may serve on the public GETs; both 0: they revalidate every use (docs/api.md).
    http_max_age_s: int = _env("JOLLYJET_HTTP_MAX_AGE_S", 0, ge=0, le=3600)
    http_stale_while_revalidate_s: int = _env("JOLLYJET_HTTP_STALE_WHILE_REVALIDATE_S", 0, ge=0, le=3600)
    log_level: str = _env("JOLLYJET_LOG_LEVEL", "INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")
    log_format: LogFormat = _env("JOLLYJET_LOG_FORMAT", LogFormat.AUTO)
    # HOST:PORT, e.g. 0.0.0.0:9101. Off by default: two workers on one host must not fight over a port.
    worker_metrics_address: str = _env("JOLLYJET_WORKER_METRICS_ADDRESS", "", pattern=_ADDRESS)
    beat_metrics_address: str = _env("JOLLYJET_BEAT_METRICS_ADDRESS", "", pattern=_ADDRESS)
    # --- Redis (None: embedded fakeredis, only outside production). The scheme names the topology:
    # redis[s]:// or unix:// standalone, redis[s]+cluster:// any node, redis[s]+sentinel:// (docs).
    redis_url: str | None = _env("REDIS_URL", None, repr=False)
    # Socket and connect timeout of every Redis connection (cache, sentinels, rate-limit counts).
    redis_timeout_ms: int = _env("JOLLYJET_REDIS_TIMEOUT_MS", 100, ge=1, le=10000)
    # --- The cache
    cache_enabled: bool = _env("JOLLYJET_CACHE_ENABLED", True)
    cache_key_prefix: str = _env("JOLLYJET_CACHE_KEY_PREFIX", "jj", pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    cache_product_ttl_s: int = _env("JOLLYJET_CACHE_PRODUCT_TTL_S", 3600, ge=1, le=604800)
    cache_list_ttl_s: int = _env("JOLLYJET_CACHE_LIST_TTL_S", 300, ge=1, le=86400)
    cache_fence_poll_s: float = _env("JOLLYJET_CACHE_FENCE_POLL_S", 1.0, ge=0.05, le=60)
    breaker_cooldown_s: float = _env("JOLLYJET_BREAKER_COOLDOWN_S", 5.0, gt=0, le=600)
    popularity_sample_rate: float = _env("JOLLYJET_POPULARITY_SAMPLE_RATE", 0.1, gt=0, le=1)
    # --- Celery and the jobs
    celery_broker_url: str | None = _env("CELERY_BROKER_URL", None, repr=False)
    celery_result_backend: str | None = _env("CELERY_RESULT_BACKEND", None, repr=False)
    celery_queue: str = _env("CELERY_QUEUE", "jollyjet", pattern=_NAME)
    # kombu's Sentinel transport finds the broker's master by this name (sentinel:// URLs).
    celery_sentinel_master: str | None = _env("CELERY_SENTINEL_MASTER", None, pattern=_NAME)
    # The sentinels' own password for those URLs (the master's goes in the URL: sentinel://:pw@host:port).
    celery_sentinel_password: SecretStr | None = _env("CELERY_SENTINEL_PASSWORD", None)
    # An unacknowledged task is handed out again after this: it must exceed the hard time limit plus the longest retry.
    celery_visibility_timeout_s: int = _env("CELERY_VISIBILITY_TIMEOUT_S", 3600, ge=60, le=86400)
    celery_time_limit_s: int = _env("CELERY_TIME_LIMIT_S", 300, ge=2, le=21600)
    celery_retry_backoff_max_s: int = _env("CELERY_RETRY_BACKOFF_MAX_S", 120, ge=1, le=3600)
    # Jobs beat never schedules (see JOBS); warm off: none at worker start, repair off: none when a breaker closes.
    jobs_off_raw: str = _env("JOLLYJET_JOBS_OFF", "")
    audit_interval_s: int = _env("JOLLYJET_AUDIT_INTERVAL_S", 900, ge=1, le=7 * 86400)
    audit_mode: AuditMode = _env("JOLLYJET_AUDIT_MODE", AuditMode.SAMPLE)
    repair_interval_s: int = _env("JOLLYJET_REPAIR_INTERVAL_S", 30, ge=1, le=86400)
    # --- Overload: the MongoDB bulkhead and the rate limits (docs/operations.md, "Overload")
    web_threads: int = _env("WEB_THREADS", 4, ge=1, le=1024)  # the Procfile's and Dockerfile's gunicorn --threads
    db_bulkhead: int | None = _env("JOLLYJET_DB_BULKHEAD", None, ge=1, le=1024)
    rate_limits_enabled: bool = _env("JOLLYJET_RATE_LIMITS_ENABLED", True)
    # None: derived from the Redis settings (http.storage_uri). Carries credentials like REDIS_URL.
    rate_limit_storage_uri: str | None = _env("JOLLYJET_RATE_LIMIT_STORAGE_URI", None, repr=False)
    trusted_proxies: int = _env("JOLLYJET_TRUSTED_PROXIES", 0, ge=0, le=5)

    @field_validator(*_SCHEMES)
    @classmethod
    def _known_scheme(cls, value: str | None, info: ValidationInfo) -> str | None:
        schemes = _SCHEMES[info.field_name or ""]
        if not value and info.field_name != "mongodb_uri":
            return None  # unset, or set to nothing
        if not (value or "").startswith(schemes):
            raise ValueError(f"must start with {', '.join(schemes[:-1])} or {schemes[-1]}")
        if info.field_name == "redis_url" and (value or "").startswith(_SENTINEL_URL):
            parse_sentinel_url(value or "")
        return value

    @field_validator("cors_origins_raw", "jobs_off_raw")
    @classmethod
    def _items_are_known(cls, value: str, info: ValidationInfo) -> str:
        for item in _items(value):
            if info.field_name == "cors_origins_raw" and not _ORIGIN.fullmatch(item):
                raise ValueError(f"{item[:80]!r} is not an origin like https://shop.example.com[:port]")
            if info.field_name == "jobs_off_raw" and item not in JOBS:
                raise ValueError(f"{item[:40]!r} is not a job ({', '.join(JOBS)})")
        return value

    @model_validator(mode="after")
    def _settings_fit_together(self) -> Settings:
        celery_urls = (self.celery_broker_url or "", self.celery_result_backend or "")
        if any(url.startswith("sentinel://") for url in celery_urls) and not self.celery_sentinel_master:
            raise ValueError("CELERY_SENTINEL_MASTER: required when a Celery URL is sentinel://")
        if self.celery_visibility_timeout_s <= self.celery_time_limit_s + self.celery_retry_backoff_max_s:
            raise ValueError(
                "CELERY_VISIBILITY_TIMEOUT_S: must exceed CELERY_TIME_LIMIT_S + CELERY_RETRY_BACKOFF_MAX_S, "
                "or a running task is handed to a second worker"
            )
        if self.env is Environment.PRODUCTION:
            if (self.celery_broker_url or "").startswith("memory://"):
                raise ValueError("CELERY_BROKER_URL: memory:// is in-process only; production needs a real broker")
            if self.embedded_mongo:
                raise ValueError("MONGODB_URI: production needs a real MongoDB URI, not mongomock://")
            if self.embedded_redis and self.cache_enabled:
                raise ValueError("REDIS_URL: production needs a Redis URL (or JOLLYJET_CACHE_ENABLED=false)")
            if self.redis_topology is not RedisTopology.STANDALONE and not self.celery_broker_url:
                # Celery's Redis transport speaks neither Cluster nor our sentinel settings.
                raise ValueError("CELERY_BROKER_URL: required with a sentinel or cluster topology (see docs)")
            if not self.api_tokens:
                raise ValueError("JOLLYJET_API_TOKENS: production needs at least one API token")
            if any(len(t) < 16 for t in self.api_tokens):
                raise ValueError("JOLLYJET_API_TOKENS: production tokens must be at least 16 characters")
        # Production installs (requirements.lock, the Docker image) leave the stand-ins out: name the variable.
        extra = "or install the `embedded` extra (requirements-embedded.lock; `bash scripts/serve` does)"
        if self.embedded_mongo and find_spec("mongomock") is None:
            raise ValueError(f"MONGODB_URI: not set (or mongomock://) and mongomock is not installed: set it, {extra}")
        if self.embedded_redis and self.cache_enabled and find_spec("fakeredis") is None:
            raise ValueError(f"REDIS_URL: not set and fakeredis is not installed: set it, {extra}")
        return self

    @property
    def cors_origins(self) -> tuple[str, ...]:
        """Origins allowed to call the API from a browser (comma-separated in JOLLYJET_CORS_ORIGINS)."""
        return tuple(_items(self.cors_origins_raw))

    @property
    def api_tokens(self) -> tuple[str, ...]:
        """Tokens accepted for writes (comma-separated in JOLLYJET_API_TOKENS)."""
        return tuple(_items(self.api_tokens_raw))

    @property
    def redis_topology(self) -> RedisTopology:
        """Standalone, sentinel or cluster: the scheme of REDIS_URL says which."""
        url = self.redis_url or ""
        if url.startswith(_SENTINEL_URL):
            return RedisTopology.SENTINEL
        return RedisTopology.CLUSTER if url.startswith(_CLUSTER_URL) else RedisTopology.STANDALONE

    @property
    def redis_sentinel(self) -> SentinelTarget:
        """The sentinels, master name, credentials and TLS of a redis[s]+sentinel:// REDIS_URL."""
        return parse_sentinel_url(self.redis_url or "")

    @property
    def redis_node_url(self) -> str:
        """REDIS_URL as redis-py reads it: a cluster's redis[s]+cluster:// becomes redis[s]://."""
        return (self.redis_url or "").replace("+cluster://", "://", 1)

    @property
    def embedded_redis(self) -> bool:
        """True when no REDIS_URL is set (standalone) and an in-process fakeredis stands in."""
        return self.redis_url is None

    @property
    def embedded_mongo(self) -> bool:
        """True when MongoDB is the in-process mongomock store."""
        return self.mongodb_uri.startswith("mongomock://")

    @property
    def broker_url(self) -> str:
        """Celery's broker: CELERY_BROKER_URL, else REDIS_URL, else in-process (embedded mode)."""
        return self.celery_broker_url or self._standalone_redis_url or "memory://"

    @property
    def result_backend(self) -> str:
        """Where task states and results live: CELERY_RESULT_BACKEND, else REDIS_URL, else in-process."""
        return self.celery_result_backend or self._standalone_redis_url or "cache+memory://"

    @property
    def _standalone_redis_url(self) -> str | None:
        # A cluster node's URL is no broker: Celery's Redis transport would meet MOVED replies.
        return self.redis_url if self.redis_topology is RedisTopology.STANDALONE else None

    @property
    def embedded_broker(self) -> bool:
        """True when tasks can only run in this process (no broker a separate worker could reach)."""
        return self.broker_url.startswith("memory://")

    def job_on(self, job: str) -> bool:
        """True unless JOLLYJET_JOBS_OFF names this job (warm, cleanup, audit or repair)."""
        return job not in _items(self.jobs_off_raw)

    @property
    def db_bulkhead_size(self) -> int:
        """Concurrent MongoDB calls per process: JOLLYJET_DB_BULKHEAD, else half the web threads (rounded up)."""
        # However many misses arrive, half the threads stay free for what needs no MongoDB (hits, health, 429s).
        return self.db_bulkhead or (self.web_threads + 1) // 2

    def metrics_address(self, role: str) -> tuple[str, int] | None:
        """(host, port) the worker or beat serves its metrics on, or None."""
        value = self.worker_metrics_address if role == "worker" else self.beat_metrics_address
        match = re.match(_ADDRESS, value)
        return (match.group("host").strip("[]"), int(match.group("port"))) if match and value else None


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment (plus explicit overrides) or raise SettingsError naming each variable."""
    if retired := [name for name in _RETIRED if name in os.environ]:
        raise SettingsError(f"no longer read, REDIS_URL carries them (docs/configuration.md): {', '.join(retired)}")
    try:
        return Settings(**overrides)
    except ValidationError as error:
        lines = []
        for item in error.errors():
            loc = ".".join(str(p) for p in item["loc"]) or "settings"
            alias = getattr(Settings.model_fields.get(loc), "validation_alias", None)
            lines.append(f"{alias.choices[0] if isinstance(alias, AliasChoices) else loc}: {item['msg']}")
        raise SettingsError("invalid configuration: " + "; ".join(lines)) from None
