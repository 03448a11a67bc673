"""Celery application and background jobs (see docs/background-jobs.md)."""
