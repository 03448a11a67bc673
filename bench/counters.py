"""Per-request counters that several gunicorn workers write and the benchmark runner sums.

Each worker process maps its own small file (`<dir>/<pid>.counters`) and adds to
fixed int64 slots; the runner reads every file and adds them up. A shared file per
process needs no locking between processes, no flush thread and no endpoint the
load would have to reach on the right worker.
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
from pathlib import Path

# What a request is: a read of one of these kinds, a write, or the stale checker's own traffic.
KINDS = ("product", "list", "count", "write", "other", "checker")
# Per kind: requests, requests served without any MongoDB command, MongoDB commands,
# Redis round trips (commands or pipelines sent) of all requests and of those served
# without MongoDB, responses with a 5xx status, and the service's X-Cache verdicts.
FIELDS = (
    "requests",
    "no_db",
    "db_commands",
    "redis_round_trips",
    "no_db_redis_round_trips",
    "server_errors",
    "x_cache_hit",
    "x_cache_miss",
    "x_cache_bypass",
)
EXTRA = ("requests_started", "db_commands_outside_requests", "redis_round_trips_outside_requests")
NAMES = tuple(f"{kind}.{field}" for kind in KINDS for field in FIELDS) + EXTRA
_INDEX = {name: i for i, name in enumerate(NAMES)}
_SLOT = struct.Struct("<q")


class CounterFile:
    """This process's counters, in a memory-mapped file of len(NAMES) int64 slots."""

    def __init__(self, directory: Path) -> None:
        path = directory / f"{os.getpid()}.counters"
        with path.open("wb") as out:
            out.write(bytes(_SLOT.size * len(NAMES)))
        self._file = path.open("r+b")
        self._map = mmap.mmap(self._file.fileno(), 0)
        self._lock = threading.Lock()

    def add(self, name: str, amount: int = 1) -> None:
        """Add amount to one counter (thread-safe within the process)."""
        offset = _INDEX[name] * _SLOT.size
        with self._lock:
            (current,) = _SLOT.unpack_from(self._map, offset)
            _SLOT.pack_into(self._map, offset, current + amount)


def read_totals(directory: Path) -> dict[str, int]:
    """Every counter summed over all worker files in directory."""
    totals = dict.fromkeys(NAMES, 0)
    for path in sorted(directory.glob("*.counters")):
        data = path.read_bytes()
        for i, name in enumerate(NAMES):
            if (i + 1) * _SLOT.size <= len(data):
                totals[name] += _SLOT.unpack_from(data, i * _SLOT.size)[0]
    return totals


def in_flight(totals: dict[str, int]) -> int:
    """Requests started and not finished yet."""
    return totals["requests_started"] - sum(totals[f"{kind}.requests"] for kind in KINDS)


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    """after - before, per counter."""
    return {name: after.get(name, 0) - before.get(name, 0) for name in NAMES}
