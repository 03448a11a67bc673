"""Celery worker and beat: `celery -A tasks worker`, `celery -A tasks beat` (see Procfile).

Importing this package connects nothing: the Flask app (and with it the Celery app)
is built on first access to `tasks.app`, which is what `celery -A tasks` asks for.
"""

from __future__ import annotations

from typing import Any

from tasks import jobs as jobs  # registers the shared tasks with every Celery app
from tasks.worker_app import create_celery

_celery: Any = None


def __getattr__(name: str) -> Any:
    # Module-level __getattr__ (PEP 562): `celery -A tasks` looks up `tasks.app`.
    global _celery
    if name == "app":
        if _celery is None:
            _celery = create_celery()
        return _celery
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
