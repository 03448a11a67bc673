"""Failed cache writes: their log in MongoDB, and the recovery fence that serves no hit until they are replayed.

A cache write that fails after the MongoDB commit is recorded in MongoDB (not in Redis, which
failed) and replayed by the repair job. Until then no process serves a hit for that product, nor
any list, count or categories result. Other processes learn it from a poll every `poll_s` and serve
no hit on a poll older than `max_age_s`; the failed write answers only after `max_age_s`
(`commit_wait`): Spanner's commit wait, with a poll for a clock bound (docs/reliability.md).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from mongoengine import DateTimeField, Document, IntField, StringField
from pymongo.errors import PyMongoError

from jollyjet.cache.epoch import CacheEpochGuard
from jollyjet.db import null_or_missing, set_to_server_time

log = logging.getLogger(__name__)
PENDING_CAP = 10_000  # more pending records than this: every product is fenced
# A process that has not asked the fence for this many polls stops polling (an idle process
# sends MongoDB nothing); its next request refreshes first, then polls again.
IDLE_POLLS = 10


class CacheRepairRecord(Document):
    """One product whose cached state (and the list generation) may be stale."""

    meta = {
        "collection": "cache_repairs",
        "auto_create_index": False,
        "indexes": [{"fields": ["done_at", "created_at"]}],
    }
    product_id = StringField(required=True)
    reason = StringField(required=True)
    created_at = DateTimeField(required=True)
    attempts = IntField(default=0)
    done_at = DateTimeField(null=True)


class RepairLog:
    """Records failed cache writes; a failure to record is logged, never raised."""

    def record(self, product_id: str, reason: str) -> bool:
        """Remember that product_id's cache entry and the list generation need repair; False if that failed."""
        try:
            CacheRepairRecord(product_id=product_id, reason=reason[:200], created_at=datetime.now(UTC)).save()
        except PyMongoError:  # the product write itself succeeded; TTLs still bound the staleness
            log.exception("could not record cache repair for product %s", product_id)
            return False
        return True

    def _not_done(self) -> Any:
        return CacheRepairRecord.objects(__raw__={"done_at": null_or_missing()})

    def pending(self, limit: int) -> list[CacheRepairRecord]:
        """Oldest records not yet repaired."""
        return list(self._not_done().order_by("created_at").limit(limit))

    def pending_product_ids(self, limit: int) -> list[str]:
        """Product ids of records not yet repaired (at most limit; one query, the fence's poll)."""
        return [str(pid) for pid in self._not_done().limit(limit).scalar("product_id")]

    def pending_count(self) -> int:
        """How many records wait for repair."""
        return int(self._not_done().count())

    def mark_done(self, record_ids: Sequence[ObjectId]) -> int:
        """Mark records repaired (the repair job calls this after rewriting their keys)."""
        if not record_ids:
            return 0
        return int(CacheRepairRecord.objects(id__in=list(record_ids)).update(__raw__=set_to_server_time("done_at")))

    def mark_attempted(self, record_ids: Sequence[ObjectId]) -> None:
        """Count a failed repair attempt (Redis still unreachable)."""
        if record_ids:
            CacheRepairRecord.objects(id__in=list(record_ids)).update(inc__attempts=1)

    def purge_done(self, older_than: timedelta) -> int:
        """Delete repaired records older than the retention; returns how many."""
        cutoff = datetime.now(UTC) - older_than
        return int(CacheRepairRecord.objects(done_at__ne=None, done_at__lt=cutoff).delete())


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
        epoch: CacheEpochGuard | None = None,
    ) -> None:
        self.repairs = repairs
        self.epoch = epoch  # its view of the current Redis servers is polled with this one
        self.poll_s = poll_s
        self.max_age_s = 2 * poll_s  # a poll may be one interval late (a slow query, a busy CPU)
        self._clock = clock
        self._background = background
        self._snapshot: _Snapshot | None = None
        self._local: dict[str, float] = {}  # failures recorded here, noted after the record was stored
        self._lock = threading.Lock()
        self._refreshing = threading.Lock()
        self._poller_pid: int | None = None
        self._last_used = clock()
        self.queries = 0

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

    def note_failure(self, product_id: str) -> None:
        """A failed write of product_id was just recorded in MongoDB: fence it here at once."""
        with self._lock:
            self._local = {**self._local, product_id: self._clock()}  # copied: readers look without the lock

    def commit_wait(self) -> None:
        """Hold the failed write's answer until every process's fresh poll includes its record."""
        time.sleep(self.max_age_s)

    def refresh(self) -> None:
        """One query: the product ids of pending records. Errors are logged; the old view ages out."""
        if self.epoch is not None:
            self.epoch.refresh()
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
        if (snapshot := self._fresh()) is not None:
            return snapshot
        # First use, or the poll is late: one request refreshes, the others read MongoDB meanwhile.
        if self._refreshing.acquire(blocking=False):
            try:
                self.refresh()
            finally:
                self._refreshing.release()
        return self._fresh()

    def _fresh(self) -> _Snapshot | None:
        snapshot = self._snapshot
        return snapshot if snapshot is not None and self._clock() - snapshot.started_at <= self.max_age_s else None

    def _ensure_poller(self) -> None:
        # Per process: a forked worker (gunicorn, Celery prefork) starts its own thread.
        if self._poller_pid == os.getpid():
            return
        with self._lock:
            if self._poller_pid == os.getpid():
                return
            self._poller_pid = os.getpid()
        args = (weakref.ref(self), self.poll_s)
        threading.Thread(target=_poll_while_used, args=args, name="repair-fence", daemon=True).start()

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
