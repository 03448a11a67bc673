"""The processes tests start: stopping them (politely first, then for sure) and finding their children."""

from __future__ import annotations

import subprocess
from pathlib import Path


def stop_process(process: subprocess.Popen[bytes], timeout_s: float = 10) -> None:
    """SIGTERM (servers save and clean up on it), wait, and SIGKILL if it is still running."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def children_of(parent_pid: int) -> list[int]:
    """Pids whose parent is parent_pid (gunicorn's workers, Celery's pool processes), from /proc."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # exited while we looked
            if int(fields[1]) == parent_pid:
                children.append(int(entry.name))
    return children
