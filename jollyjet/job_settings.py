"""Settings of the Celery worker, beat and background jobs (mixed into Settings).

Every schedule, batch size and threshold is here with a default, so an operator
tunes jobs with environment variables and never with code.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings


def env(name: str) -> Any:
    """Field bound to exactly one environment variable name."""
    return AliasChoices(name)


class AuditMode(StrEnum):
    SAMPLE = "sample"
    FULL = "full"


_BROKER_SCHEMES = ("redis://", "rediss://", "unix://", "sentinel://", "amqp://", "amqps://", "memory://")
_RESULT_SCHEMES = ("redis://", "rediss://", "unix://", "sentinel://", "cache+memory://")


class JobSettings(BaseSettings):
    """Celery and job knobs. Field aliases are the environment variable names."""

    celery_broker_url: str | None = Field(None, validation_alias=env("CELERY_BROKER_URL"), repr=False)
    celery_result_backend: str | None = Field(None, validation_alias=env("CELERY_RESULT_BACKEND"), repr=False)
    celery_queue: str = Field("jollyjet", pattern=r"^[A-Za-z0-9_.-]{1,64}$", validation_alias=env("CELERY_QUEUE"))
    # Redis-broker redelivery: an unacknowledged task is handed out again after this
    # long, so it must exceed the longest task (hard limit) plus the longest retry delay.
    celery_visibility_timeout_s: int = Field(3600, ge=60, le=86400, validation_alias=env("CELERY_VISIBILITY_TIMEOUT_S"))
    celery_soft_time_limit_s: int = Field(240, ge=1, le=21600, validation_alias=env("CELERY_SOFT_TIME_LIMIT_S"))
    celery_time_limit_s: int = Field(300, ge=2, le=21600, validation_alias=env("CELERY_TIME_LIMIT_S"))
    celery_max_retries: int = Field(5, ge=0, le=100, validation_alias=env("CELERY_MAX_RETRIES"))
    celery_retry_backoff_max_s: int = Field(120, ge=1, le=3600, validation_alias=env("CELERY_RETRY_BACKOFF_MAX_S"))
    celery_result_expires_s: int = Field(86400, ge=60, le=30 * 86400, validation_alias=env("CELERY_RESULT_EXPIRES_S"))

    # How long an admin request waits for the broker to take a job before answering 503.
    job_publish_timeout_s: float = Field(3.0, gt=0, le=60, validation_alias=env("JOLLYJET_JOB_PUBLISH_TIMEOUT_S"))

    popularity_sample_rate: float = Field(0.1, gt=0, le=1, validation_alias=env("JOLLYJET_POPULARITY_SAMPLE_RATE"))
    popularity_flush_s: float = Field(5.0, ge=0, le=300, validation_alias=env("JOLLYJET_POPULARITY_FLUSH_S"))
    popularity_max_members: int = Field(10000, ge=10, le=10_000_000, validation_alias=env("JOLLYJET_POPULARITY_MAX"))

    warm_enabled: bool = Field(True, validation_alias=env("JOLLYJET_WARM_ENABLED"))
    warm_interval_s: int = Field(300, ge=1, le=86400, validation_alias=env("JOLLYJET_WARM_INTERVAL_S"))
    warm_on_worker_start: bool = Field(True, validation_alias=env("JOLLYJET_WARM_ON_WORKER_START"))
    warm_top_products: int = Field(500, ge=0, le=100_000, validation_alias=env("JOLLYJET_WARM_TOP_PRODUCTS"))
    warm_top_queries: int = Field(20, ge=0, le=1000, validation_alias=env("JOLLYJET_WARM_TOP_QUERIES"))

    cleanup_enabled: bool = Field(True, validation_alias=env("JOLLYJET_CLEANUP_ENABLED"))
    cleanup_interval_s: int = Field(3600, ge=1, le=7 * 86400, validation_alias=env("JOLLYJET_CLEANUP_INTERVAL_S"))
    cleanup_scan_batch: int = Field(500, ge=10, le=10000, validation_alias=env("JOLLYJET_CLEANUP_SCAN_BATCH"))
    repair_retention_days: int = Field(7, ge=0, le=365, validation_alias=env("JOLLYJET_REPAIR_RETENTION_DAYS"))

    audit_enabled: bool = Field(True, validation_alias=env("JOLLYJET_AUDIT_ENABLED"))
    audit_interval_s: int = Field(900, ge=1, le=7 * 86400, validation_alias=env("JOLLYJET_AUDIT_INTERVAL_S"))
    audit_mode: AuditMode = Field(AuditMode.SAMPLE, validation_alias=env("JOLLYJET_AUDIT_MODE"))
    audit_sample_rate: float = Field(0.2, gt=0, le=1, validation_alias=env("JOLLYJET_AUDIT_SAMPLE_RATE"))
    audit_max_keys: int = Field(20000, ge=1, le=10_000_000, validation_alias=env("JOLLYJET_AUDIT_MAX_KEYS"))
    audit_batch: int = Field(200, ge=1, le=5000, validation_alias=env("JOLLYJET_AUDIT_BATCH"))
    audit_repair: bool = Field(True, validation_alias=env("JOLLYJET_AUDIT_REPAIR"))
    audit_history: int = Field(100, ge=1, le=10000, validation_alias=env("JOLLYJET_AUDIT_HISTORY"))

    repair_enabled: bool = Field(True, validation_alias=env("JOLLYJET_REPAIR_ENABLED"))
    repair_interval_s: int = Field(30, ge=1, le=86400, validation_alias=env("JOLLYJET_REPAIR_INTERVAL_S"))
    repair_batch: int = Field(500, ge=1, le=100_000, validation_alias=env("JOLLYJET_REPAIR_BATCH"))

    @field_validator("celery_broker_url")
    @classmethod
    def _known_broker_scheme(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not value.startswith(_BROKER_SCHEMES):
            raise ValueError("must start with one of " + ", ".join(_BROKER_SCHEMES))
        return value

    @field_validator("celery_result_backend")
    @classmethod
    def _known_result_scheme(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not value.startswith(_RESULT_SCHEMES):
            raise ValueError("must start with one of " + ", ".join(_RESULT_SCHEMES))
        return value

    def job_limits_problem(self) -> str | None:
        """Why the time limits and visibility timeout do not fit together, or None."""
        if self.celery_soft_time_limit_s >= self.celery_time_limit_s:
            return "CELERY_SOFT_TIME_LIMIT_S: must be below CELERY_TIME_LIMIT_S"
        if self.celery_visibility_timeout_s <= self.celery_time_limit_s + self.celery_retry_backoff_max_s:
            return (
                "CELERY_VISIBILITY_TIMEOUT_S: must exceed CELERY_TIME_LIMIT_S + CELERY_RETRY_BACKOFF_MAX_S, "
                "or a running task is handed to a second worker"
            )
        return None
