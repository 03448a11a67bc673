"""What a phase cost, read from outside: the app's own /metrics counters and its redis-server's INFO.

Nothing is instrumented in the app under test. Its counters are read from the files that
prometheus-client's multiprocess mode keeps per gunicorn worker and /metrics sums (a scrape
over HTTP would be a request the service counts): MongoDB commands (the naive app counts its
own under the same name), the cache's Redis calls (one per round trip) and cache outcomes.
Each mode has its own redis-server, so INFO's counts are that mode's alone (the naive and
floor apps send plain commands: a command is a round trip, a keyspace hit a hit).
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import redis
import urllib3
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from bench.workload import Request

if TYPE_CHECKING:
    from bench.stack import Web

T = TypeVar("T")
DB_QUERIES = "jollyjet_db_queries_total"
REDIS_CALLS = "jollyjet_redis_command_duration_seconds_count"
CACHE_REQUESTS = "jollyjet_cache_requests_total"
HTTP_REQUESTS = "jollyjet_http_request_duration_seconds_count"
COUNTERS = (DB_QUERIES, REDIS_CALLS, CACHE_REQUESTS, HTTP_REQUESTS)
# Not the request path's: pings, and the popularity counts the service sends in batches off it.
BACKGROUND = {"ping", "endSessions", "incr_scores"}


class HttpClient:
    """One keep-alive connection (urllib3); writes carry the token."""

    def __init__(self, base_url: str, token: str = "") -> None:
        self.pool = urllib3.connection_from_url(base_url, maxsize=1, timeout=30, retries=1)
        self.write_headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}

    def send(self, method: str, path: str, body: bytes | None = None) -> urllib3.BaseHTTPResponse:
        """Send one request and read the whole response (status, headers, data)."""
        return self.pool.request(method, path, body=body, headers=None if method == "GET" else self.write_headers)

    def close(self) -> None:
        """Close the connection."""
        self.pool.close()


def scrape(directory: Path) -> dict[str, float]:
    """The app's counters by "name{labels}", as its /metrics would sum them over its workers."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    samples = (s for family in registry.collect() for s in family.samples if s.name in COUNTERS)
    return {s.name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items())) + "}": s.value for s in samples}


def total(counts: dict[str, float], name: str, *having: str) -> int:
    """The sum of one metric's samples whose labels hold every `having`, the background's left out."""
    chosen = [k for k in counts if k.startswith(name + "{") and all(h in k for h in having)]
    return round(sum(counts[k] for k in chosen if not any(f'operation="{b}"' in k for b in BACKGROUND)))


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def snapshot(web: Web, client: redis.Redis) -> dict[str, Any]:
    """Counters of the app, its Redis commands and keyspace hits, now."""
    stats = client.info("stats")
    commands = {k.removeprefix("cmdstat_"): v["calls"] for k, v in client.info("commandstats").items()}
    redis_counts = {k: n for k, n in commands.items() if k not in ("info", "flushall")}
    redis_counts |= {"keyspace_hits": stats["keyspace_hits"], "keyspace_misses": stats["keyspace_misses"]}
    return {"metrics": scrape(web.metrics_dir), "redis": redis_counts}


def between(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """after - before, part by part (raw deltas: summable across rounds)."""
    # Every metric kept: a series at 0 says the app has it.
    return {part: {k: v - before[part].get(k, 0) for k, v in after[part].items()} for part in ("metrics", "redis")}


def combine(raws: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Raw deltas added up."""
    sum_: dict[str, Counter[str]] = {"metrics": Counter(), "redis": Counter()}
    for raw in raws:
        sum_["metrics"].update(raw["metrics"])  # Counter.update adds
        sum_["redis"].update(raw["redis"])
    return dict(sum_)


def figures(raw: dict[str, Any], requests: int) -> dict[str, Any]:
    """What a phase of `requests` requests cost: MongoDB queries, Redis round trips and commands, hits."""
    m, r = raw["metrics"], raw["redis"]
    commands = {k: v for k, v in r.items() if v and not k.startswith("keyspace_")}
    sent = sum(commands.values())
    by_service = any(k.startswith(CACHE_REQUESTS) for k in m)
    hits = total(m, CACHE_REQUESTS, 'result="hit"') if by_service else r.get("keyspace_hits", 0)
    looked_up = total(m, CACHE_REQUESTS) if by_service else hits + r.get("keyspace_misses", 0)
    db = total(m, DB_QUERIES)
    return {
        "requests": requests,
        "db_queries": db,
        "db_queries_per_1k_requests": 1000 * db / requests if requests else None,
        "hits": hits,
        "hit_ratio": hits / looked_up if looked_up else None,
        "redis_round_trips": total(m, REDIS_CALLS) if by_service else sent,
        "redis_commands": commands,
    }


def settle(web: Web, timeout_s: float = 60) -> None:
    """Wait until the app's processes are idle: what a phase left queued is served before the next starts."""
    deadline = time.monotonic() + timeout_s
    busy = lambda: sum(cpu_seconds(p) for p in web.pids())  # noqa: E731
    while time.monotonic() < deadline:
        before = busy()
        time.sleep(0.25)
        if busy() - before < 0.02:
            return


def measured(web: Web, run: Callable[[], T]) -> tuple[T, dict[str, Any]]:
    """Run one phase between two snapshots; returns its result and the raw deltas meanwhile."""
    client = web.redis_server.client()
    try:
        settle(web)
        before = snapshot(web, client)
        result = run()
        settle(web)
        return result, between(before, snapshot(web, client))
    finally:
        client.close()


def send_concurrently(base_url: str, requests: Iterable[Request], connections: int) -> dict[str, int]:
    """Send every request exactly once over several connections; returns how many got each status."""
    local = threading.local()

    def send(r: Request) -> str:
        local.client = getattr(local, "client", None) or HttpClient(base_url)
        return str(local.client.send(r.method, r.path, r.body).status)

    with ThreadPoolExecutor(connections) as pool:
        return dict(Counter(pool.map(send, requests)))
