"""Where audit results live: MongoDB, so they survive a Redis outage and the API can show them."""

from __future__ import annotations

from typing import Any

from mongoengine import BooleanField, DateTimeField, DictField, Document, FloatField, IntField, StringField

from jollyjet.products.record import api_timestamp


class AuditRun(Document):
    """One consistency audit: what it checked, found and repaired."""

    meta = {
        "collection": "cache_audits",
        "auto_create_index": False,
        "indexes": [{"fields": ["-finished_at"]}],
        "ordering": ["-finished_at"],
    }

    started_at = DateTimeField(required=True)
    finished_at = DateTimeField(required=True)
    duration_s = FloatField(required=True)
    mode = StringField(required=True)
    keys_scanned = IntField(required=True)
    keys_checked = IntField(required=True)
    tombstones = IntField(required=True)
    drift = DictField(required=True)  # class → how many entries showed it
    repaired = DictField(required=True)  # class → how many were repaired
    repair_enabled = BooleanField(required=True)

    def as_dict(self) -> dict[str, Any]:
        """The API's and the metrics' view of this run."""
        return {
            "id": str(self.id),
            "started_at": api_timestamp(self.started_at),
            "finished_at": api_timestamp(self.finished_at),
            "duration_s": self.duration_s,
            "mode": self.mode,
            "keys_scanned": self.keys_scanned,
            "keys_checked": self.keys_checked,
            "tombstones": self.tombstones,
            "drift": dict(self.drift),
            "drift_total": sum(self.drift.values()),
            "repaired": dict(self.repaired),
            "repair_enabled": self.repair_enabled,
        }


def latest_audit() -> AuditRun | None:
    """The most recent audit run, or None before the first."""
    return AuditRun.objects.order_by("-finished_at").first()


def prune_audits(keep: int) -> int:
    """Keep the newest `keep` runs; returns how many older ones were deleted."""
    # By id past the first `keep`, not "older than the keep-th run's time": MongoDB
    # stores milliseconds, and runs finishing in the same one (ties at the cutoff)
    # would all be kept. _id breaks ties (ObjectIds grow with insertion).
    older = AuditRun.objects.order_by("-finished_at", "-id").skip(keep).scalar("id")
    ids = list(older)
    if not ids:
        return 0
    return int(AuditRun.objects(id__in=ids).delete())
