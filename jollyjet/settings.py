"""Settings from environment variables, validated once at start-up."""

from __future__ import annotations

import re
from enum import StrEnum
from importlib.util import find_spec
from typing import Any

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

# The one env() helper, under another name here: Settings has a field called `env`,
# which would shadow the helper inside the class body.
from jollyjet.job_settings import JobSettings
from jollyjet.job_settings import env as _env
from jollyjet.overload_settings import OverloadSettings
from jollyjet.redis_topology_settings import RedisTopology, RedisTopologySettings

__all__ = ["Environment", "RedisTopology", "Settings", "SettingsError", "load_settings"]
from jollyjet.monitoring_settings import MonitoringSettings

EMBEDDED_MONGODB_URI = "mongomock://localhost/jollyjet"
# scheme://host[:port], no path: what a browser sends in Origin. "*" is refused on purpose:
# requests carry a bearer token, so each allowed origin is named.
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?")


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TESTING = "testing"
    PRODUCTION = "production"


class SettingsError(RuntimeError):
    """A setting is missing or malformed; the message names the variable."""


class Settings(JobSettings, RedisTopologySettings, MonitoringSettings, OverloadSettings):
    """Every knob of the service. Field aliases are the environment variable names."""

    model_config = SettingsConfigDict(populate_by_name=True, extra="ignore", frozen=True)

    env: Environment = Field(Environment.DEVELOPMENT, validation_alias=_env("JOLLYJET_ENV"))
    mongodb_uri: str = Field(EMBEDDED_MONGODB_URI, validation_alias=_env("MONGODB_URI"))
    mongodb_timeout_ms: int = Field(2000, ge=50, le=60000, validation_alias=_env("JOLLYJET_MONGODB_TIMEOUT_MS"))
    # None means "embedded fakeredis" and is only allowed outside production.
    redis_url: str | None = Field(None, validation_alias=_env("REDIS_URL"))
    redis_socket_timeout_ms: int = Field(100, ge=1, le=10000, validation_alias=_env("JOLLYJET_REDIS_SOCKET_TIMEOUT_MS"))
    redis_connect_timeout_ms: int = Field(
        100, ge=1, le=10000, validation_alias=_env("JOLLYJET_REDIS_CONNECT_TIMEOUT_MS")
    )
    redis_retries: int = Field(1, ge=0, le=5, validation_alias=_env("JOLLYJET_REDIS_RETRIES"))
    redis_pool_size: int = Field(32, ge=1, le=10000, validation_alias=_env("JOLLYJET_REDIS_POOL_SIZE"))
    redis_pool_timeout_ms: int = Field(100, ge=1, le=10000, validation_alias=_env("JOLLYJET_REDIS_POOL_TIMEOUT_MS"))
    redis_health_check_interval_s: int = Field(
        15, ge=0, le=3600, validation_alias=_env("JOLLYJET_REDIS_HEALTH_CHECK_INTERVAL_S")
    )

    cache_enabled: bool = Field(True, validation_alias=_env("JOLLYJET_CACHE_ENABLED"))
    cache_key_prefix: str = Field(
        "jj", pattern=r"^[A-Za-z0-9_.-]{1,32}$", validation_alias=_env("JOLLYJET_CACHE_KEY_PREFIX")
    )
    cache_product_ttl_s: int = Field(3600, ge=1, le=604800, validation_alias=_env("JOLLYJET_CACHE_PRODUCT_TTL_S"))
    cache_list_ttl_s: int = Field(300, ge=1, le=86400, validation_alias=_env("JOLLYJET_CACHE_LIST_TTL_S"))
    cache_ttl_jitter: float = Field(0.1, ge=0.0, le=0.5, validation_alias=_env("JOLLYJET_CACHE_TTL_JITTER"))
    cache_tombstone_ttl_s: int = Field(60, ge=1, le=86400, validation_alias=_env("JOLLYJET_CACHE_TOMBSTONE_TTL_S"))
    cache_lease_ttl_ms: int = Field(2000, ge=10, le=60000, validation_alias=_env("JOLLYJET_CACHE_LEASE_TTL_MS"))
    cache_fill_wait_ms: int = Field(250, ge=0, le=5000, validation_alias=_env("JOLLYJET_CACHE_FILL_WAIT_MS"))
    cache_fence_poll_s: float = Field(1.0, ge=0.05, le=60, validation_alias=_env("JOLLYJET_CACHE_FENCE_POLL_S"))
    breaker_failure_threshold: int = Field(3, ge=1, le=1000, validation_alias=_env("JOLLYJET_BREAKER_FAILURES"))
    breaker_cooldown_s: float = Field(5.0, gt=0, le=600, validation_alias=_env("JOLLYJET_BREAKER_COOLDOWN_S"))

    api_tokens_raw: str = Field("", validation_alias=_env("JOLLYJET_API_TOKENS"), repr=False)
    max_body_bytes: int = Field(
        64 * 1024, ge=1024, le=16 * 1024 * 1024, validation_alias=_env("JOLLYJET_MAX_BODY_BYTES")
    )
    max_page_size: int = Field(100, ge=1, le=1000, validation_alias=_env("JOLLYJET_MAX_PAGE_SIZE"))
    max_page: int = Field(10000, ge=1, le=1_000_000, validation_alias=_env("JOLLYJET_MAX_PAGE"))
    # Browser origins allowed to call the API (CORS); empty: CORS off. jollyjet/http_headers.py.
    cors_origins_raw: str = Field("", validation_alias=_env("JOLLYJET_CORS_ORIGINS"))
    log_level: str = Field("INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$", validation_alias=_env("JOLLYJET_LOG_LEVEL"))
    # Staleness an operator accepts from browsers and CDNs on the public GETs; both 0 (the
    # default): they store but revalidate every use. jollyjet/http_headers.py, docs/api.md.
    http_max_age_s: int = Field(0, ge=0, le=3600, validation_alias=_env("JOLLYJET_HTTP_MAX_AGE_S"))
    http_stale_while_revalidate_s: int = Field(
        0, ge=0, le=3600, validation_alias=_env("JOLLYJET_HTTP_STALE_WHILE_REVALIDATE_S")
    )

    @field_validator("mongodb_uri")
    @classmethod
    def _known_mongo_scheme(cls, value: str) -> str:
        if not value.startswith(("mongodb://", "mongodb+srv://", "mongomock://")):
            raise ValueError("must start with mongodb://, mongodb+srv:// or mongomock://")
        return value

    @field_validator("cors_origins_raw")
    @classmethod
    def _origins_are_origins(cls, value: str) -> str:
        for origin in (o.strip() for o in value.split(",") if o.strip()):
            if not _ORIGIN.fullmatch(origin):
                raise ValueError(f"{origin[:80]!r} is not an origin like https://shop.example.com[:port]")
        return value

    @field_validator("redis_url")
    @classmethod
    def _known_redis_scheme(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @model_validator(mode="after")
    def _topology_fits(self) -> Settings:
        problem = self.topology_problem(self.redis_url)
        celery_urls = (self.celery_broker_url or "", self.celery_result_backend or "")
        if any(url.startswith("sentinel://") for url in celery_urls) and not self.celery_sentinel_master:
            problem = problem or "CELERY_SENTINEL_MASTER: required when a Celery URL is sentinel://"
        if problem:
            raise ValueError(problem)
        return self

    @model_validator(mode="after")
    def _jobs_fit_their_limits(self) -> Settings:
        problem = self.job_limits_problem()
        if problem:
            raise ValueError(problem)
        return self

    @model_validator(mode="after")
    def _production_needs_real_servers(self) -> Settings:
        if self.env is Environment.PRODUCTION:
            if self.celery_broker_url is not None and self.celery_broker_url.startswith("memory://"):
                raise ValueError("CELERY_BROKER_URL: memory:// is in-process only; production needs a real broker")
            if self.mongodb_uri.startswith("mongomock://"):
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
        return self

    @model_validator(mode="after")
    def _stand_ins_installed(self) -> Settings:
        # Production installs (requirements.lock, the Docker image) leave the stand-ins out:
        # say which variable is missing instead of failing on an import at first use.
        extra = "or install the `embedded` extra (requirements-embedded.lock; `bash scripts/serve` does)"
        if self.embedded_mongo and find_spec("mongomock") is None:
            raise ValueError(f"MONGODB_URI: not set (or mongomock://) and mongomock is not installed: set it, {extra}")
        if self.embedded_redis and self.cache_enabled and find_spec("fakeredis") is None:
            raise ValueError(f"REDIS_URL: not set and fakeredis is not installed: set it, {extra}")
        return self

    @property
    def cors_origins(self) -> tuple[str, ...]:
        """Origins allowed to call the API from a browser (comma-separated in JOLLYJET_CORS_ORIGINS)."""
        return tuple(o.strip() for o in self.cors_origins_raw.split(",") if o.strip())

    @property
    def api_tokens(self) -> tuple[str, ...]:
        """Tokens accepted for writes (comma-separated in JOLLYJET_API_TOKENS)."""
        return tuple(t.strip() for t in self.api_tokens_raw.split(",") if t.strip())

    @property
    def embedded_redis(self) -> bool:
        """True when no REDIS_URL is set (standalone) and an in-process fakeredis stands in."""
        return self.redis_url is None and self.redis_topology is RedisTopology.STANDALONE

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

    @property
    def embedded_mongo(self) -> bool:
        """True when MongoDB is the in-process mongomock store."""
        return self.mongodb_uri.startswith("mongomock://")


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        loc = ".".join(str(p) for p in item["loc"]) or "settings"
        field = Settings.model_fields.get(loc)
        alias = field.validation_alias if field else None
        name = alias.choices[0] if isinstance(alias, AliasChoices) else loc
        lines.append(f"{name}: {item['msg']}")
    return "invalid configuration: " + "; ".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment (plus explicit overrides) or raise SettingsError."""
    try:
        return Settings(**overrides)
    except ValidationError as error:
        raise SettingsError(_describe(error)) from None
