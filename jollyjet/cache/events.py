"""Cache events: the seam where metrics attach.

The cached repository reports what happened (hit, miss, bypass, database read,
failed cache write, …) to a CacheEvents sink. EventCounter keeps in-process
counts (used by tests and the benchmark); jollyjet/monitoring/cache_sink.py is the
Prometheus sink. TeeEvents hands each event to several sinks.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from typing import Protocol


class CacheEvents(Protocol):
    """Receives one event at a time; must be cheap and never raise."""

    def emit(self, event: str, kind: str) -> None:
        """Record one event.

        Outcomes, exactly one per cached read: hit, wait_hit (served by another request's
        fill), miss (served from the database after a miss), bypass (Redis failed or the
        breaker is open). Others: db_read, fill, fill_rejected, write_through,
        write_refused (the version guard kept a newer entry), write_failure, fenced (a read
        sent to the database by the recovery fence), epoch_started (a Redis server's cached
        data deleted before first use).
        kind: product, list, count, categories; server for epoch_started.
        """


class EventCounter:
    """Thread-safe counts of (event, kind) pairs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()

    def emit(self, event: str, kind: str) -> None:
        with self._lock:
            self._counts[(event, kind)] += 1

    def count(self, event: str, kind: str | None = None) -> int:
        """Count of one event, for one kind or summed over kinds."""
        with self._lock:
            return sum(n for (e, k), n in self._counts.items() if e == event and (kind is None or k == kind))

    def snapshot(self) -> dict[str, int]:
        """All counts as {"event:kind": n}."""
        with self._lock:
            return {f"{e}:{k}": n for (e, k), n in sorted(self._counts.items())}

    def reset(self) -> None:
        """Forget all counts."""
        with self._lock:
            self._counts.clear()


class TeeEvents:
    """Hands every event to each sink in turn (e.g. an EventCounter and the Prometheus sink)."""

    def __init__(self, sinks: Sequence[CacheEvents]) -> None:
        self.sinks = tuple(sinks)

    def emit(self, event: str, kind: str) -> None:
        for sink in self.sinks:
            sink.emit(event, kind)
