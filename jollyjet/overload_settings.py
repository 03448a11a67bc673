"""Settings of overload protection (mixed into Settings): the MongoDB bulkhead and the rate limits.

docs/operations.md ("Overload") explains what each protects and the figures measured
with the defaults.
"""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings

from jollyjet.job_settings import env

_LIMIT_SCHEMES = ("memory://", "redis://", "rediss://", "redis+unix://", "redis+sentinel://", "redis+cluster://")


def _parsed_limits(value: str) -> str:
    # flask-limiter parses these strings on every limited request: a typo must stop the
    # start-up, not turn into a request that fails or a limit that silently never applies.
    from limits import parse_many

    try:
        parse_many(value)
    except ValueError:
        raise ValueError(f"{value[:80]!r} is not a rate limit like '10/second;120/minute'") from None
    return value


class OverloadSettings(BaseSettings):
    """Bulkhead and rate-limit knobs. Field aliases are the environment variable names."""

    # The Procfile's and the Dockerfile's gunicorn --threads come from the same variable.
    web_threads: int = Field(4, ge=1, le=1024, validation_alias=env("WEB_THREADS"))
    # None: half the web threads, rounded up (db_bulkhead_size).
    db_bulkhead: int | None = Field(None, ge=1, le=1024, validation_alias=env("JOLLYJET_DB_BULKHEAD"))
    db_bulkhead_wait_ms: int = Field(100, ge=0, le=5000, validation_alias=env("JOLLYJET_DB_BULKHEAD_WAIT_MS"))

    rate_limits_enabled: bool = Field(True, validation_alias=env("JOLLYJET_RATE_LIMITS_ENABLED"))
    rate_limit_search: str = Field("10/second;120/minute", validation_alias=env("JOLLYJET_RATE_LIMIT_SEARCH"))
    rate_limit_deep_pages: str = Field("5/second;60/minute", validation_alias=env("JOLLYJET_RATE_LIMIT_DEEP_PAGES"))
    deep_page_offset: int = Field(1000, ge=1, le=10**9, validation_alias=env("JOLLYJET_DEEP_PAGE_OFFSET"))
    rate_limit_auth_failures: str = Field(
        "10/minute;100/hour", validation_alias=env("JOLLYJET_RATE_LIMIT_AUTH_FAILURES")
    )
    # None: derived from the Redis settings (rate_limits.storage_uri). Carries credentials like REDIS_URL.
    rate_limit_storage_uri: str | None = Field(
        None, validation_alias=env("JOLLYJET_RATE_LIMIT_STORAGE_URI"), repr=False
    )
    # How many proxies in front append to X-Forwarded-For; 0: the header is ignored.
    trusted_proxies: int = Field(0, ge=0, le=5, validation_alias=env("JOLLYJET_TRUSTED_PROXIES"))

    @field_validator("rate_limit_search", "rate_limit_deep_pages", "rate_limit_auth_failures")
    @classmethod
    def _limits_parse(cls, value: str) -> str:
        return _parsed_limits(value)

    @field_validator("rate_limit_storage_uri")
    @classmethod
    def _known_limit_storage(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not value.startswith(_LIMIT_SCHEMES):
            raise ValueError("must start with " + ", ".join(_LIMIT_SCHEMES))
        return value

    @property
    def db_bulkhead_size(self) -> int:
        """Concurrent MongoDB calls per process: JOLLYJET_DB_BULKHEAD, else half the web threads (rounded up)."""
        # Half: however many misses arrive, at least half a process's threads stay free for
        # what never touches MongoDB (cache hits, health checks, 429s); a waiter on the
        # bulkhead holds its thread only for JOLLYJET_DB_BULKHEAD_WAIT_MS.
        return self.db_bulkhead or (self.web_threads + 1) // 2
