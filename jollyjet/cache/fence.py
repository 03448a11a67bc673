"""When the cache may be used: the circuit breaker (Redis is failing now), and the recovery fence over the
log of failed cache writes (no hit until they are replayed).

The breaker (closed → failure_threshold consecutive failures → open → cooldown_s → half-open: one trial
call) keeps requests from waiting on socket timeouts while Redis is down.

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
from enum import StrEnum
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


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Thread-safe consecutive-failure breaker, so no request waits for a socket timeout while Redis is down.

    Closed → (failure_threshold consecutive failures) → open → (cooldown_s) → half-open: one
    trial call; its success closes the breaker, its failure re-opens it."""

    def __init__(self, failure_threshold: int, cooldown_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_in_flight = False
        self.times_opened = 0
        # Called outside the lock (errors logged) when a trial closes it: writes that failed meanwhile
        # want repairing now, not at the next tick; and each time it opens (metrics).
        self.on_recover: list[Callable[[], None]] = []
        self.on_open: list[Callable[[], None]] = []

    @property
    def state(self) -> BreakerState:
        """Current state (open turns half-open once the cool-down has elapsed)."""
        with self._lock:
            return self._state_locked()

    def _state_locked(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        return BreakerState.HALF_OPEN if self._clock() - self._opened_at >= self.cooldown_s else BreakerState.OPEN

    def allow(self) -> bool:
        """May a call go to Redis now? In half-open, only one trial at a time."""
        if self._opened_at is None:  # closed: no lock on the hot path (one attribute read is atomic)
            return True
        with self._lock:
            state = self._state_locked()
            if state is BreakerState.HALF_OPEN and not self._trial_in_flight:
                self._trial_in_flight = True
                return True
            return state is BreakerState.CLOSED

    def record_success(self) -> None:
        """A call succeeded: close the breaker (and tell on_recover listeners if it was open)."""
        if self._opened_at is None and self._failures == 0:
            return  # nothing to reset (the hot path); a racing failure is simply ordered after this call
        with self._lock:
            recovered = self._opened_at is not None
            self._failures = 0
            self._opened_at = None
            self._trial_in_flight = False
        if recovered:
            _notify(self.on_recover)

    def record_neither(self) -> None:
        """A call told nothing of Redis's health (it was refused before reaching Redis): a trial may run again."""
        with self._lock:
            self._trial_in_flight = False

    def record_failure(self) -> None:
        """A call failed: count it, and open (or re-open) when over the threshold."""
        with self._lock:
            self._failures += 1
            reopen = self._trial_in_flight
            self._trial_in_flight = False
            opened = reopen or (self._opened_at is None and self._failures >= self.failure_threshold)
            if opened:
                self._opened_at = self._clock()
                self.times_opened += 1
        if opened:
            _notify(self.on_open)


def _notify(listeners: list[Callable[[], None]]) -> None:
    for listener in listeners:
        try:
            listener()
        except Exception:
            log.exception("breaker listener failed")
