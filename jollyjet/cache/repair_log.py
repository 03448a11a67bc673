"""Durable records of cache writes that failed after the database write succeeded.

Stored in MongoDB, not Redis: the records exist precisely because Redis was
unreachable. The repair job (tasks/) replays them once Redis is back.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from mongoengine import DateTimeField, Document, IntField, StringField
from pymongo.errors import PyMongoError

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

    def record(self, product_id: str, reason: str) -> None:
        """Remember that product_id's cache entry and the list generation need repair."""
        try:
            CacheRepairRecord(product_id=product_id, reason=reason[:200], created_at=datetime.now(UTC)).save()
        except PyMongoError:
            # The product write itself succeeded; TTLs still bound the staleness.
            log.exception("could not record cache repair for product %s", product_id)

    def pending(self, limit: int) -> list[CacheRepairRecord]:
        """Oldest records not yet repaired."""
        return list(CacheRepairRecord.objects(done_at=None).order_by("created_at").limit(limit))

    def pending_count(self) -> int:
        """How many records wait for repair."""
        return CacheRepairRecord.objects(done_at=None).count()
