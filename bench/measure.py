"""Snapshots around a phase: the app's counters, Redis command counts and CPU time, and what they mean."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import redis

from bench.client import HttpClient
from bench.counters import delta, in_flight, read_totals
from bench.stack import Web, cpu_seconds
from bench.workload import Request

T = TypeVar("T")
READ_KINDS = ("product", "list", "count")
PROBE_TOUCH = 10
# The runner's own calls to the bench's redis-server, not the app's.
_RUNNER_COMMANDS = ("info", "config", "client", "flushall", "dbsize")


def redis_commands(client: redis.Redis) -> dict[str, int]:
    """Calls per command so far (INFO commandstats), without the runner's own."""
    stats: dict[str, Any] = client.info("commandstats")
    calls = {}
    for name, values in stats.items():
        command = name.removeprefix("cmdstat_")
        if not command.startswith(_RUNNER_COMMANDS):
            calls[command] = int(values["calls"])
    return calls


@dataclass
class Snapshot:
    """Everything counted at one moment."""

    counters: dict[str, int]
    redis: dict[str, int]
    cpu: dict[str, float]
    at: float


def snapshot(web: Web, client: redis.Redis, server_pids: dict[str, int]) -> Snapshot:
    """Counters, Redis commands and CPU seconds of the app, Redis and MongoDB now."""
    cpu = {"app": sum(cpu_seconds(pid) for pid in web.pids())}
    cpu.update({name: cpu_seconds(pid) for name, pid in server_pids.items()})
    return Snapshot(read_totals(web.counters), redis_commands(client), cpu, time.monotonic())


def settle(web: Web, timeout_s: float = 120) -> None:
    """Wait until no request is in flight: what a phase left queued is served before the next starts."""
    deadline = time.monotonic() + timeout_s
    while in_flight(read_totals(web.counters)) > 0 and time.monotonic() < deadline:
        time.sleep(0.2)


def between(before: Snapshot, after: Snapshot) -> dict[str, Any]:
    """The raw deltas between two snapshots (summable across rounds; derive() explains them)."""
    return {
        "counts": delta(after.counters, before.counters),
        "redis": {k: v - before.redis.get(k, 0) for k, v in after.redis.items() if v - before.redis.get(k, 0)},
        "cpu_s": {k: round(after.cpu.get(k, 0) - before.cpu.get(k, 0), 3) for k in after.cpu},
        "wall_s": round(after.at - before.at, 3),
    }


def combine(raws: list[dict[str, Any]]) -> dict[str, Any]:
    """Several phases' raw deltas added up."""
    total: dict[str, Any] = {"counts": {}, "redis": {}, "cpu_s": {}, "wall_s": 0.0}
    for raw in raws:
        for part in ("counts", "redis", "cpu_s"):
            for k, v in raw[part].items():
                total[part][k] = total[part].get(k, 0) + v
        total["wall_s"] += raw["wall_s"]
    return total


def derive(raw: dict[str, Any]) -> dict[str, Any]:
    """The figures of one phase: hit ratio, MongoDB queries per 1,000 requests, Redis commands, CPU."""
    counts, commands = raw["counts"], raw["redis"]
    reads = sum(counts[f"{k}.requests"] for k in READ_KINDS)
    served = reads + counts["write.requests"] + counts["other.requests"]
    db_reads = sum(counts[f"{k}.db_commands"] for k in READ_KINDS)
    # Commands no request sent (a background poll of the service's) are load on MongoDB too.
    db_all = db_reads + counts["write.db_commands"] + counts["other.db_commands"]
    db_all += counts["db_commands_outside_requests"]
    per_kind = {
        kind: {
            "requests": counts[f"{kind}.requests"],
            "hits": counts[f"{kind}.no_db"],
            "hit_ratio": _ratio(counts[f"{kind}.no_db"], counts[f"{kind}.requests"]),
            "db_commands": counts[f"{kind}.db_commands"],
            "redis_round_trips": counts[f"{kind}.redis_round_trips"],
            "hit_redis_round_trips": counts[f"{kind}.no_db_redis_round_trips"],
            "x_cache": {v: counts[f"{kind}.x_cache_{v}"] for v in ("hit", "miss", "bypass")},
        }
        for kind in (*READ_KINDS, "write", "checker")
    }
    return {
        "requests": served,
        "reads": reads,
        "writes": counts["write.requests"],
        "server_errors": sum(counts[f"{k}.server_errors"] for k in (*READ_KINDS, "write", "other", "checker")),
        "hit_ratio": _ratio(sum(counts[f"{k}.no_db"] for k in READ_KINDS), reads),
        "db_queries": db_all,
        "db_queries_per_1k_requests": _per_1k(db_all, served),
        "db_queries_by_reads_per_1k_reads": _per_1k(db_reads, reads),
        "db_queries_outside_requests": counts["db_commands_outside_requests"],
        "checker_requests": counts["checker.requests"],
        "redis_commands": commands,
        "redis_commands_per_request": _ratio(sum(commands.values()), served + counts["checker.requests"]),
        "redis_round_trips_per_request": _ratio(
            sum(counts[f"{k}.redis_round_trips"] for k in (*READ_KINDS, "write", "other")), served
        ),
        "per_kind": per_kind,
        "cpu_s": raw["cpu_s"],
        "wall_s": raw["wall_s"],
    }


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def _per_1k(part: float, whole: float) -> float | None:
    return 1000 * part / whole if whole else None


def measured(
    web: Web, client: redis.Redis, server_pids: dict[str, int], run: Callable[[], T]
) -> tuple[T, dict[str, Any]]:
    """Run one phase between two snapshots; returns its own result and what the app did meanwhile."""
    settle(web)
    before = snapshot(web, client, server_pids)
    result = run()
    settle(web)
    return result, between(before, snapshot(web, client, server_pids))


def send_all(client: HttpClient, requests: Iterable[Request]) -> dict[str, int]:
    """Send requests one after another; returns how many got each status."""
    statuses: dict[str, int] = {}
    for request in requests:
        reply = client.send(request.method, request.path, request.body)
        statuses[str(reply.status)] = statuses.get(str(reply.status), 0) + 1
    return statuses


def send_concurrently(base_url: str, requests: Iterable[Request], connections: int) -> dict[str, int]:
    """Send every request exactly once over several connections; returns how many got each status."""
    source = iter(requests)
    lock = threading.Lock()
    statuses: dict[str, int] = {}

    def next_request() -> Request | None:
        with lock:
            return next(source, None)

    def worker() -> None:
        client = HttpClient(base_url)
        try:
            while (request := next_request()) is not None:
                reply = client.send(request.method, request.path, request.body)
                with lock:
                    statuses[str(reply.status)] = statuses.get(str(reply.status), 0) + 1
        finally:
            client.close()

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def hit_path_probe(
    web: Web, client: redis.Redis, requests: list[Request], server_pids: dict[str, int]
) -> dict[str, Any]:
    """Reads of warm keys, one at a time: Redis round trips (client side) and commands (server side) per hit."""
    http = HttpClient(web.url)
    try:
        # Unmeasured first: a process that sat idle refreshes what it needs before its
        # first hits (the service's recovery fence reads MongoDB once after a pause).
        send_all(http, requests[:PROBE_TOUCH])
        statuses, raw = measured(web, client, server_pids, lambda: send_all(http, requests))
    finally:
        http.close()
    counts = derive(raw)
    hits = sum(counts["per_kind"][k]["hits"] for k in READ_KINDS)
    # Of the hits alone: a read the service sent to MongoDB (a miss) is not the hit path.
    round_trips = sum(counts["per_kind"][k]["hit_redis_round_trips"] for k in READ_KINDS)
    commands = counts["redis_commands"]
    return {
        "requests": len(requests),
        "statuses": statuses,
        "hits": hits,
        "x_cache_hits": sum(counts["per_kind"][k]["x_cache"]["hit"] for k in READ_KINDS),
        "redis_round_trips": round_trips,
        "redis_round_trips_per_hit": _ratio(round_trips, hits),
        "redis_commands": commands,
        "redis_commands_per_hit": _ratio(sum(commands.values()), hits),
        "redis_commands_per_hit_by_command": {k: v / hits for k, v in sorted(commands.items())} if hits else {},
        "db_queries": counts["db_queries"],
    }
