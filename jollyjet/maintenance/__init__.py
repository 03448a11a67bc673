"""Background jobs on the cache: warming, cleanup, consistency audit, repair, flush.

Plain functions over the service objects (jollyjet.extensions.Services); the Celery
tasks in tasks/ are thin wrappers, so every job is testable without a worker.
"""
