"""The machine a run came from: CPUs, memory, kernel, load, versions of what was measured."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    """The machine the run came from."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")), "?")
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    mem_kb = next((int(ln.split()[1]) for ln in meminfo.splitlines() if ln.startswith("MemTotal")), 0)
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "versions": _versions(),
    }


def _versions() -> dict[str, str]:
    import gunicorn
    import pymongo
    import redis

    versions = {"gunicorn": gunicorn.__version__, "redis-py": redis.__version__, "pymongo": pymongo.version}
    for name, argv in {"redis-server": ["redis-server", "--version"], "wrk": ["wrk", "-v"]}.items():
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=5, check=False)
            versions[name] = (done.stdout or done.stderr).splitlines()[0].strip()
        except (OSError, IndexError, subprocess.TimeoutExpired):
            versions[name] = "?"
    return versions
