"""A ledger of completed writes, and the stale-read judge built on it.

Shared by the fault suite and the benchmark's stale checker. A stale read is a read
that *began* after a write of that product had *completed* (its response received)
and returned an older version, or returned a product whose delete had completed.
Times are `time.monotonic()` of the one client process that sends the traffic, so
"before" and "after" are judged on one clock, the client's, as a user would see it.

Thread-safe: load generators record from many threads.
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict
from dataclasses import dataclass, field

DELETED = -1  # the version a completed delete leaves: any returned product is older news


@dataclass
class StaleRead:
    """One read the ledger judged stale."""

    product_id: str
    began_at: float
    returned_version: int | None  # None: the product was reported missing
    newest_completed: int  # the newest version whose write completed before the read began
    where: str  # "product", or the list/count query the item was seen in


@dataclass
class _History:
    # Parallel lists, sorted by completion time: when each write completed and what it left.
    completed_at: list[float] = field(default_factory=list)
    version: list[int] = field(default_factory=list)


class WriteLedger:
    """Completed writes per product; judges reads against them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._history: dict[str, _History] = defaultdict(_History)
        self.stale: list[StaleRead] = []
        self.reads_checked = 0
        self.writes_recorded = 0

    def record_write(self, product_id: str, version: int, completed_at: float) -> None:
        """A write (create/update) that left `version` completed at `completed_at`."""
        with self._lock:
            history = self._history[product_id]
            index = bisect.bisect_right(history.completed_at, completed_at)
            history.completed_at.insert(index, completed_at)
            history.version.insert(index, version)
            self.writes_recorded += 1

    def record_delete(self, product_id: str, completed_at: float) -> None:
        """A delete of the product completed at `completed_at`."""
        self.record_write(product_id, DELETED, completed_at)

    def newest_before(self, product_id: str, began_at: float) -> int | None:
        """The version (or DELETED) of the newest write completed before `began_at`; None if none."""
        with self._lock:
            history = self._history.get(product_id)
            if history is None:
                return None
            index = bisect.bisect_left(history.completed_at, began_at)
            if index == 0:
                return None
            # Writes to one product are serialized by MongoDB, so the newest completed is
            # the highest version among those completed (a delete outranks every version).
            versions = history.version[:index]
            return DELETED if DELETED in versions else max(versions)

    def check_read(
        self, product_id: str, began_at: float, returned_version: int | None, where: str = "product"
    ) -> bool:
        """Judge one read; returns True when it was fresh. `returned_version` None means 'not found'."""
        newest = self.newest_before(product_id, began_at)
        with self._lock:
            self.reads_checked += 1
        if newest is None:
            return True
        if newest == DELETED:
            fresh = returned_version is None
        else:
            fresh = returned_version is not None and returned_version >= newest
        if not fresh:
            with self._lock:
                self.stale.append(StaleRead(product_id, began_at, returned_version, newest, where))
        return fresh

    def check_items(self, items: list[tuple[str, int]], began_at: float, where: str) -> int:
        """Judge the (id, version) items a list page returned; returns how many were stale.

        Only what the page shows can be judged item by item: a product that should have
        entered or left the page is the count and membership checks' business.
        """
        return sum(0 if self.check_read(pid, began_at, version, where) else 1 for pid, version in items)

    @property
    def stale_count(self) -> int:
        """How many stale reads were judged so far."""
        with self._lock:
            return len(self.stale)
