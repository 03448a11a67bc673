"""Circuit breaker: after repeated Redis failures, stop trying for a cool-down.

Without it every request would wait for a socket timeout while Redis is down.
Closed → (threshold consecutive failures) → open → (cool-down elapsed) →
half-open: one trial call; success closes, failure re-opens.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from enum import StrEnum

log = logging.getLogger(__name__)


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Thread-safe consecutive-failure breaker."""

    def __init__(
        self,
        failure_threshold: int,
        cooldown_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_in_flight = False
        self.times_opened = 0
        # Called (outside the lock, errors logged) when a trial call closes an open breaker:
        # Redis is back, and writes that failed meanwhile want repairing now, not at the next tick.
        self.on_recover: list[Callable[[], None]] = []
        # Called (outside the lock, errors logged) each time the breaker opens (metrics).
        self.on_open: list[Callable[[], None]] = []

    @property
    def state(self) -> BreakerState:
        """Current state (open turns half-open once the cool-down has elapsed)."""
        with self._lock:
            return self._state_locked()

    def _state_locked(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - self._opened_at >= self.cooldown_s:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def allow(self) -> bool:
        """May a call go to Redis now? In half-open, only one trial at a time."""
        if self._opened_at is None:  # closed: no lock on the hot path (one attribute read is atomic)
            return True
        with self._lock:
            state = self._state_locked()
            if state is BreakerState.CLOSED:
                return True
            if state is BreakerState.HALF_OPEN and not self._trial_in_flight:
                self._trial_in_flight = True
                return True
            return False

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
