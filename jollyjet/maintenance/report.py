"""What every job's entry point returns, and the entry point's shape."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from jollyjet.extensions import Services
    from jollyjet.settings import Settings


class JobReport(Protocol):
    """Counts and timings of one run (WarmReport, CleanupReport, AuditRun, RepairReport)."""

    duration_s: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the Celery task's result, the log line, the metrics."""
        ...


# run_warm, run_cleanup, run_audit, run_repair: the one way each job is started.
JobEntry = Callable[["Services", "Settings"], JobReport]
