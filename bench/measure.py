"""What a phase cost, read from outside: the app's own /metrics counters and its redis-server's INFO.

Nothing is instrumented in the app under test. Its counters are read from the files
prometheus-client's multiprocess mode keeps per gunicorn worker, the ones /metrics sums (a
scrape over HTTP would be a request the service counts and answers): MongoDB commands
(jollyjet_db_queries_total, which the naive app counts under the same name), Redis calls
of the cache (one per round trip, a pipeline or script included) and cache outcomes. Each
mode has its own redis-server, so INFO's counts are that mode's alone (the naive and floor
apps send plain commands: a command is a round trip, a keyspace hit a hit).
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
    return round(
        sum(
            v
            for k, v in counts.items()
            if k.startswith(name + "{")
            and all(h in k for h in having)
            and not any(f'operation="{b}"' in k for b in BACKGROUND)
        )
    )


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
    return {"metrics": scrape(web.metrics_dir), "redis": redis_counts, "wall_s": time.monotonic()}


def between(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """after - before, part by part (raw deltas: summable across rounds)."""
    delta: dict[str, Any] = {"wall_s": after["wall_s"] - before["wall_s"]}
    for part in ("metrics", "redis"):  # every metric kept: a series at 0 says the app has it
        delta[part] = {k: v - before[part].get(k, 0) for k, v in after[part].items()}
    return delta


def combine(raws: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Raw deltas added up."""
    sum_: dict[str, Any] = {"metrics": {}, "redis": {}, "wall_s": 0.0}
    for raw in raws:
        for part in ("metrics", "redis"):
            for k, v in raw[part].items():
                sum_[part][k] = sum_[part].get(k, 0) + v
        sum_["wall_s"] += raw["wall_s"]
    return sum_


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
        "redis_commands_per_request": sent / requests if requests else None,
        "wall_s": raw["wall_s"],
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
    client = web.redis()
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


def probe(web: Web, requests: list[Request]) -> dict[str, Any]:
    """Warm keys read one at a time: hits, and Redis round trips and commands per hit."""
    http = HttpClient(web.url)
    try:
        for _ in range(3):  # again when a read missed: the figures are of the hit path alone
            # Each read once unmeasured first: a process that sat idle refreshes what it needs
            # before its first hits (the service's recovery fence reads MongoDB once after a
            # pause), and a list page fills the entries of items the sweep did not read.
            for request in requests:
                http.send(request.method, request.path)
            replies, raw = measured(web, lambda: [http.send(r.method, r.path) for r in requests])
            counts = figures(raw, len(requests))
            if counts["hits"] == len(requests):
                break
    finally:
        http.close()
    hits, commands = counts["hits"], counts["redis_commands"]
    return {
        "requests": len(requests),
        "hits": hits,
        "x_cache_hits": sum(reply.headers.get("x-cache") == "HIT" for reply in replies),
        "redis_round_trips": counts["redis_round_trips"],
        "redis_round_trips_per_hit": counts["redis_round_trips"] / hits if hits else None,
        "redis_commands_per_hit": sum(commands.values()) / hits if hits else None,
        "redis_commands_per_hit_by_command": {k: v / hits for k, v in sorted(commands.items())} if hits else {},
        "db_queries": counts["db_queries"],
    }
