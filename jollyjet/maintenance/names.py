"""Celery task names of the jobs: the admin API enqueues by name, tasks/ registers under it."""

WARM = "jollyjet.cache.warm"
CLEANUP = "jollyjet.cache.cleanup"
AUDIT = "jollyjet.cache.audit"
REPAIR = "jollyjet.cache.repair"
