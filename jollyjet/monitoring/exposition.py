"""The Prometheus text of one process group: recorded metrics (all processes) plus live figures."""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from jollyjet.monitoring.process_dir import multiprocess_dir

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class SafeMultiProcessCollector(MultiProcessCollector):
    """MultiProcessCollector that retries when it catches a process creating its file.

    A process that records its first value creates its file and then sizes it; a scrape
    between the two reads an empty file and fails (struct.error). A moment later the
    file is whole, so read again rather than fail the scrape."""

    def collect(self) -> Iterable[Metric]:
        """All processes' values, summed per mode."""
        for attempt in range(5):
            try:
                return list(super().collect())
            except struct.error:
                if attempt == 4:
                    raise
                time.sleep(0.01 * (attempt + 1))
        return []


def recorded_registry() -> CollectorRegistry:
    """What the processes recorded: summed from the multiprocess files, else this process's registry."""
    path = multiprocess_dir()
    if path is None:
        return REGISTRY
    registry = CollectorRegistry()
    SafeMultiProcessCollector(registry, path=str(path))
    return registry


def live_registry(collector: Collector | None) -> CollectorRegistry:
    """A registry with the scrape-time collector (empty without one)."""
    registry = CollectorRegistry(auto_describe=False)
    if collector is not None:
        registry.register(collector)
    return registry


def render(live: CollectorRegistry) -> bytes:
    """The exposition: families are unique by name, so the two texts simply concatenate."""
    return generate_latest(recorded_registry()) + generate_latest(live)
