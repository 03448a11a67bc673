"""The beat schedule, as data, in one place; each entry switched and timed by a setting."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from jollyjet.maintenance import names
from jollyjet.settings import Settings


def periodic_job_definitions(settings: Settings) -> dict[str, dict[str, Any]]:
    """Celery beat_schedule entries for the enabled jobs (none when the cache is off)."""
    if not settings.cache_enabled:
        return {}
    jobs = [
        ("cache-warm", names.WARM, settings.warm_enabled, settings.warm_interval_s),
        ("cache-cleanup", names.CLEANUP, settings.cleanup_enabled, settings.cleanup_interval_s),
        ("cache-audit", names.AUDIT, settings.audit_enabled, settings.audit_interval_s),
        ("cache-repair", names.REPAIR, settings.repair_enabled, settings.repair_interval_s),
    ]
    return {
        entry: {
            "task": task,
            "schedule": timedelta(seconds=interval),
            # A run that could not start within one interval is superseded by the next.
            "options": {"expires": interval},
        }
        for entry, task, enabled, interval in jobs
        if enabled
    }
