"""The recovery fence: no hit for a product whose failed cache write is not yet replayed.

A cache write that fails after the MongoDB commit leaves the old entry in Redis
whenever Redis still holds it (a timeout on a live Redis, a hang, a partition). The
write is recorded in MongoDB (repair_log.py) and replayed by the repair job; until the
replay, that entry, every list and count (any may include the product) and the category
memo are older than what MongoDB holds. So, while a record is pending:

- no process serves a hit for that product, nor any list, count or category result;
  reads go to MongoDB instead;
- the process that recorded the failure knows at once; every other process learns it
  from MongoDB, by a background poll (one query per `poll_s`, off the request path: a
  hit costs no query), and refuses hits while its last poll is older than `max_age_s`;
- the write that failed answers its client only after `max_age_s` (`commit_wait`), so
  any read that begins after that answer, in any process, is judged against a poll that
  began after the record existed (Spanner's commit wait, with a poll instead of a
  clock bound).

The fence lifts for a product when the repair job has rewritten its entry and bumped
the list generation, and marked its records done, and a poll has seen that.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from jollyjet.cache.repair_log import RepairLog

log = logging.getLogger(__name__)
# More pending records than this: every product is fenced (the poll reads no more ids).
PENDING_CAP = 10_000
# A process that has not asked the fence for this many poll intervals stops polling (an
# idle process sends MongoDB nothing); its next request refreshes first, then polls again.
IDLE_POLLS = 10


class Refreshable(Protocol):
    def refresh(self) -> None: ...


@dataclass(frozen=True)
class _Snapshot:
    started_at: float  # when the query that produced it began (the conservative end)
    pending: frozenset[str]
    overflow: bool


class RepairFence:
    """This process's view of the pending failed-write records; answers "may this hit be served?"."""

    def __init__(
        self,
        repairs: RepairLog,
        poll_s: float,
        clock: Callable[[], float] = time.monotonic,
        background: bool = True,
        also_refresh: Refreshable | None = None,
    ) -> None:
        self.repairs = repairs
        # Another view of MongoDB polled with this one (the cache epoch's current servers).
        self.also_refresh = also_refresh
        self.poll_s = poll_s
        # A poll may be late by one interval (a slow query, a busy CPU) before hits stop.
        self.max_age_s = 2 * poll_s
        self._clock = clock
        self._background = background
        self._snapshot: _Snapshot | None = None
        self._local: dict[str, float] = {}  # failures recorded here, noted after the record was stored
        self._lock = threading.Lock()
        self._refreshing = threading.Lock()
        self._poller_pid: int | None = None
        self._last_used = clock()
        self.queries = 0

    # --- the read path: no query here unless the poll is late ---------------------------------
    def allows_product(self, product_id: str) -> bool:
        """May a cached entry of this product be served now?"""
        snapshot = self._current()
        if snapshot is None or snapshot.overflow or product_id in snapshot.pending:
            return False
        noted = self._local.get(product_id)
        return noted is None or noted < snapshot.started_at

    def allows_results(self) -> bool:
        """May cached lists, counts and category results be served now (nothing pending at all)?"""
        snapshot = self._current()
        if snapshot is None or snapshot.overflow or snapshot.pending:
            return False
        return all(noted < snapshot.started_at for noted in list(self._local.values()))

    # --- the write path -------------------------------------------------------------------------
    def note_failure(self, product_id: str) -> None:
        """A failed write of product_id was just recorded in MongoDB: fence it here at once."""
        with self._lock:
            # Copied, never changed in place: readers look at it without the lock.
            self._local = {**self._local, product_id: self._clock()}

    def commit_wait(self) -> None:
        """Hold the failed write's answer until every process's fresh poll includes its record."""
        time.sleep(self.max_age_s)

    # --- polling --------------------------------------------------------------------------------
    def refresh(self) -> None:
        """One query: the product ids of pending records. Errors are logged; the old view ages out."""
        if self.also_refresh is not None:
            self.also_refresh.refresh()
        started = self._clock()
        try:
            ids = self.repairs.pending_product_ids(PENDING_CAP + 1)
        except Exception as error:  # any driver error: keep polling, the stale view stops hits by itself
            log.warning("repair fence: could not read pending cache repairs: %s", error)
            return
        finally:
            self.queries += 1
        snapshot = _Snapshot(started, frozenset(ids[:PENDING_CAP]), overflow=len(ids) > PENDING_CAP)
        with self._lock:
            if self._snapshot is None or snapshot.started_at >= self._snapshot.started_at:
                self._snapshot = snapshot
            # Local notes older than this poll are in it (or already replayed).
            self._local = {pid: noted for pid, noted in self._local.items() if noted >= started}

    def _current(self) -> _Snapshot | None:
        """A snapshot fresh enough to judge by, or None."""
        self._last_used = self._clock()
        if self._background:
            self._ensure_poller()
        snapshot = self._snapshot
        if snapshot is not None and self._clock() - snapshot.started_at <= self.max_age_s:
            return snapshot
        # First use in this process, or the poll is late: refresh here, one request at a time;
        # the others read MongoDB meanwhile.
        if self._refreshing.acquire(blocking=False):
            try:
                self.refresh()
            finally:
                self._refreshing.release()
        snapshot = self._snapshot
        if snapshot is not None and self._clock() - snapshot.started_at <= self.max_age_s:
            return snapshot
        return None

    def _ensure_poller(self) -> None:
        # Per process: a forked worker (gunicorn, Celery prefork) starts its own thread.
        if self._poller_pid == os.getpid():
            return
        with self._lock:
            if self._poller_pid == os.getpid():
                return
            self._poller_pid = os.getpid()
        thread = threading.Thread(
            target=_poll_while_used, args=(weakref.ref(self), self.poll_s), name="repair-fence", daemon=True
        )
        thread.start()

    def _stop_if_idle(self) -> bool:
        """Called by the poller: stop polling (True) when nobody asked for IDLE_POLLS intervals."""
        with self._lock:
            if self._poller_pid != os.getpid():
                return True
            if self._clock() - self._last_used > IDLE_POLLS * self.poll_s:
                self._poller_pid = None  # the next question starts a poller again
                return True
            return False


def _poll_while_used(ref: weakref.ref[RepairFence], interval_s: float) -> None:
    """Refresh the fence every interval while it is used (a weak reference: apps built by tests go away)."""
    while True:
        fence = ref()
        if fence is None or fence._stop_if_idle():
            return
        fence.refresh()
        del fence
        time.sleep(interval_s)
