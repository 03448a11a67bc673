"""The multiprocess metrics directory: created (or emptied) once per server start, never imported-order sensitive.

prometheus-client's multiprocess mode keeps each process's values in files under
PROMETHEUS_MULTIPROC_DIR and sums them at scrape time. Files left from an earlier
start would add old counts to new ones, so each start begins with an empty directory.
This module does not import prometheus_client (see the package docstring).
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)
ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> Path | None:
    """The directory this process records metrics in, or None (in-memory, one process)."""
    value = os.environ.get(ENV)
    return Path(value) if value else None


def empty_directory(path: Path | None) -> None:
    """Create path if needed and delete the metric files a previous start left in it."""
    if path is None:
        return
    path.mkdir(parents=True, exist_ok=True)
    for leftover in path.glob("*.db"):
        leftover.unlink(missing_ok=True)


def prepare_private_dir(prefix: str) -> Path | None:
    """A fresh directory of this process's own (set in the environment, removed at exit).

    None when prometheus_client is already imported: it has chosen in-memory values, and
    a directory set now would make scrapes read empty files instead of those values."""
    if "prometheus_client" in sys.modules:
        log.warning("prometheus_client was imported before the metrics directory was set: one process's metrics")
        return None
    path = Path(tempfile.mkdtemp(prefix=f"jollyjet-metrics-{prefix}-"))
    os.environ[ENV] = str(path)
    owner = os.getpid()

    def remove() -> None:
        # Forked children run atexit handlers too (Celery's pool): only the creator removes it.
        if os.getpid() == owner:
            shutil.rmtree(path, ignore_errors=True)

    atexit.register(remove)
    log.debug("metrics of this process group are recorded in %s", path)
    return path
