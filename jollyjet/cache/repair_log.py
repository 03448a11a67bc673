"""Durable records of cache writes that failed after the database write succeeded.

Stored in MongoDB, not Redis: the records exist precisely because Redis was
unreachable. The repair job (tasks/) replays them once Redis is back.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from bson import ObjectId
from mongoengine import DateTimeField, Document, IntField, StringField
from pymongo.errors import PyMongoError

from jollyjet.db import null_or_missing, set_to_server_time

log = logging.getLogger(__name__)


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
        except PyMongoError:
            # The product write itself succeeded; TTLs still bound the staleness.
            log.exception("could not record cache repair for product %s", product_id)
            return False
        return True

    def pending(self, limit: int) -> list[CacheRepairRecord]:
        """Oldest records not yet repaired."""
        return list(
            CacheRepairRecord.objects(__raw__={"done_at": null_or_missing()}).order_by("created_at").limit(limit)
        )

    def pending_product_ids(self, limit: int) -> list[str]:
        """Product ids of records not yet repaired (at most limit; one query, the fence's poll)."""
        pending = CacheRepairRecord.objects(__raw__={"done_at": null_or_missing()}).limit(limit)
        return [str(pid) for pid in pending.scalar("product_id")]

    def pending_count(self) -> int:
        """How many records wait for repair."""
        return CacheRepairRecord.objects(__raw__={"done_at": null_or_missing()}).count()

    def mark_done(self, record_ids: Sequence[ObjectId]) -> int:
        """Mark records repaired (the repair job calls this after rewriting their keys)."""
        if not record_ids:
            return 0
        query = CacheRepairRecord.objects(id__in=list(record_ids))
        return int(query.update(__raw__=set_to_server_time("done_at")))

    def mark_attempted(self, record_ids: Sequence[ObjectId]) -> None:
        """Count a failed repair attempt (Redis still unreachable)."""
        if record_ids:
            CacheRepairRecord.objects(id__in=list(record_ids)).update(inc__attempts=1)

    def purge_done(self, older_than: timedelta) -> int:
        """Delete repaired records older than the retention; returns how many."""
        cutoff = datetime.now(UTC) - older_than
        return int(CacheRepairRecord.objects(done_at__ne=None, done_at__lt=cutoff).delete())
