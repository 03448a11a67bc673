"""A beat scheduler that sends each periodic slot once, even if two beat processes run.

Two beats started by mistake would each send every job. Before sending, each claims
the entry's current slot (floor(now / interval)) in Redis with SET NX and a TTL of
two intervals; only the claimant sends. The jobs are idempotent and locked anyway,
so a rare double send near a slot boundary (clock skew between hosts) costs a
skipped run, not a wrong result.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery.beat import PersistentScheduler, ScheduleEntry

from jollyjet.cache.backend import CacheError
from jollyjet.celery_app import FlaskCelery
from jollyjet.extensions import services_of

log = logging.getLogger(__name__)


def slot_of(entry: ScheduleEntry, now: float) -> tuple[int, float] | None:
    """(slot number, interval seconds) of an interval entry at `now`; None for other schedules."""
    run_every = getattr(entry.schedule, "run_every", None)
    if run_every is None:
        return None
    interval = run_every.total_seconds()
    return (int(now // interval), interval) if interval > 0 else None


class SingleBeatScheduler(PersistentScheduler):
    """PersistentScheduler whose sends are claimed per slot in Redis."""

    app: FlaskCelery

    def apply_entry(self, entry: ScheduleEntry, producer: Any = None) -> None:
        """Send the entry only if this process claims its slot."""
        if self.claim(entry, time.time()):
            super().apply_entry(entry, producer=producer)

    def claim(self, entry: ScheduleEntry, now: float) -> bool:
        """True when this process may send entry's current slot."""
        slot = slot_of(entry, now)
        cache = services_of(self.app.flask_app).cache
        if slot is None or cache is None:
            return True
        number, interval = slot
        key = cache.keys.beat_claim(entry.name, number)
        try:
            token = cache.backend.acquire_lock(key, max(2000, int(interval * 2000)))
        except CacheError as error:
            # Redis (the lock and, by default, the broker) is down: sending would fail too.
            log.warning("beat: cannot claim %s (%s); skipping this run", entry.name, type(error).__name__)
            return False
        if token is None:
            log.info("beat: %s slot %d already sent by another beat process", entry.name, number)
        return token is not None
