"""The cache's events counted in process, for tests that assert how many reads went where."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from jollyjet.cache.store import CacheEvents


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


@dataclass(frozen=True)
class TeeEvents:
    """Hands every event to each sink in turn (a test's EventCounter and the metrics' sink)."""

    sinks: Sequence[CacheEvents]

    def emit(self, event: str, kind: str) -> None:
        for sink in self.sinks:
            sink.emit(event, kind)
