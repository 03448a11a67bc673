"""Settings of the metrics exporters and logs (mixed into Settings).

No alert thresholds here: alerting is Prometheus' job (deploy/prometheus/alerts.yml).
"""

from __future__ import annotations

import re
from enum import StrEnum

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings

from jollyjet.job_settings import env

_ADDRESS = re.compile(r"^(?P<host>[A-Za-z0-9.:\[\]-]+):(?P<port>\d{1,5})$")


class LogFormat(StrEnum):
    AUTO = "auto"
    JSON = "json"
    TEXT = "text"


class MonitoringSettings(BaseSettings):
    """Monitoring knobs. Field aliases are the environment variable names."""

    log_format: LogFormat = Field(LogFormat.AUTO, validation_alias=env("JOLLYJET_LOG_FORMAT"))
    # Off by default: two workers on one host must not fight over a port; deployments set them.
    worker_metrics_address: str = Field("", validation_alias=env("JOLLYJET_WORKER_METRICS_ADDRESS"))
    beat_metrics_address: str = Field("", validation_alias=env("JOLLYJET_BEAT_METRICS_ADDRESS"))

    @field_validator("worker_metrics_address", "beat_metrics_address")
    @classmethod
    def _host_and_port(cls, value: str) -> str:
        if value and not _ADDRESS.match(value):
            raise ValueError("must be HOST:PORT (e.g. 0.0.0.0:9101), or empty to export nothing")
        return value

    def metrics_address(self, role: str) -> tuple[str, int] | None:
        """(host, port) the worker or beat serves its metrics on, or None."""
        value = self.worker_metrics_address if role == "worker" else self.beat_metrics_address
        match = _ADDRESS.match(value)
        if match is None:
            return None
        return match.group("host").strip("[]"), int(match.group("port"))
