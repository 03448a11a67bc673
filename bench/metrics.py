"""The service's own count of MongoDB commands (`jollyjet_db_queries_total` on /metrics), when it has one.

The benchmark counts MongoDB commands with its own listener (bench/wsgi.py) because the
naive and floor apps have no /metrics; for the service's modes this second, independent
count cross-checks the first. Each scrape may make the answering process read two
figures from MongoDB itself (at most every 10 s), so small differences are expected.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request

_SAMPLE = re.compile(r'^jollyjet_db_queries_total\{operation="([^"]+)"\} ([0-9.e+]+)$', re.MULTILINE)


def scrape_db_queries(base_url: str) -> dict[str, float] | None:
    """MongoDB commands by operation so far, or None when the app serves no such metric."""
    try:
        with urllib.request.urlopen(base_url + "/metrics", timeout=5) as response:
            text = response.read().decode()
    except (urllib.error.URLError, OSError):
        return None
    samples = {op: float(value) for op, value in _SAMPLE.findall(text)}
    return samples or None


def db_queries_between(before: dict[str, float] | None, after: dict[str, float] | None) -> dict[str, float] | None:
    """Commands per operation between two scrapes (pings, the driver's own, left out)."""
    if before is None or after is None:
        return None
    return {op: n - before.get(op, 0.0) for op, n in after.items() if op != "ping" and n - before.get(op, 0.0)}
