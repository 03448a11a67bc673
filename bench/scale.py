"""Scale run: the service at 1k, 10k and 100k products, in process, on a real redis-server and nx-27017.

    nice -n 10 .venv/bin/python -m bench.scale [--sizes 1000,10000,100000] [--out docs/performance]

Per size, on a fresh redis-server and database seeded in bulk (bench/workload.py):
  warm     popularity names HOT products and the first page of one list per category; the
           warm job (the Celery task's entry point) fills them into an empty cache
  fill     every other product through the same batched, leased fill: Redis memory per
           product is INFO used_memory's growth over it
  pages    MEMORY USAGE of the cached list pages and of the filter keys they are guarded by
  hits     CPU per cached hit as bench/hit_cpu.py measures it, for product reads spread over
           the catalog, list pages and /health/live (the control: it touches no cache)
  audit    the audit job with the default settings; cleanup  the cleanup job
A job's MongoDB queries are the commands its own thread sent (the recovery fence's
background poll left out); its Redis commands INFO's total_commands_processed. Results
go to scale.json; the tables are printed.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mongoengine
import orjson
from pymongo import monitoring

from bench import workload
from bench.hit_cpu import cpu_per_request
from bench.measure import cpu_seconds
from bench.stack import (
    REPO_ROOT,
    ProductQuery,
    Stack,
    query_member,
    run_audit,
    run_cleanup,
    run_warm,
    service,
    service_constants,
)
from tests.support.redis_server import RedisServer

HOT = 1000  # products popularity names (the warm job fills its top 500 of them)
PAGE_QUERIES = [f"category={c}&sort=price" for c in workload.CATEGORIES]
# Sizing: cached pages per product (a full walk of one listing, 20 items a page).
PAGES_PER_PRODUCT = 1 / 20
SIZING = (100_000, 1_000_000, 10_000_000)
SETTINGS_SHOWN: tuple[str, ...] = (
    "cache_product_ttl_s",
    "cache_list_ttl_s",
    "warm_top_products",
    "audit_sample_rate",
    "audit_batch",
)
SETTINGS_SHOWN += ("audit_max_keys", "cleanup_scan_batch", "popularity_max_members")


class ThreadQueries(monitoring.CommandListener):
    """MongoDB commands sent by one thread (pymongo tells listeners in the sending thread)."""

    thread = 0
    counts: Counter[str] = Counter()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        """Count the command when the watched thread sent it, as "command collection"."""
        if threading.get_ident() == self.thread and event.command_name != "ping":
            collection = event.command.get("collection" if event.command_name == "getMore" else event.command_name)
            name = event.command_name
            self.counts[f"{name} {collection}" if isinstance(collection, str) else name] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        """Counted when sent."""

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        """Counted when sent."""


JOB_QUERIES = ThreadQueries()


@functools.cache
def listen_to_job_queries() -> None:
    """Register JOB_QUERIES, once per process, before the app's client exists (main may run more than once)."""
    monitoring.register(JOB_QUERIES)


def timed_job(redis_client: Any, job: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one job: its duration, its MongoDB commands, the Redis commands meanwhile, its report."""
    before = redis_client.info("stats")["total_commands_processed"]
    JOB_QUERIES.thread, JOB_QUERIES.counts = threading.get_ident(), Counter()
    started = time.monotonic()
    report = job()
    seconds, JOB_QUERIES.thread = time.monotonic() - started, 0
    return {
        "seconds": round(seconds, 3),
        "db_queries": sum(JOB_QUERIES.counts.values()),
        "db_queries_by_command": dict(JOB_QUERIES.counts),  # "find products", ...
        "redis_commands": redis_client.info("stats")["total_commands_processed"] - before - 2,  # the INFOs
        "report": report,
    }


def memory_usage(redis_client: Any, keys: list[bytes]) -> int:
    """MEMORY USAGE summed over keys (every value sample counted)."""
    pipe = redis_client.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key, samples=0)
    return sum(n or 0 for n in pipe.execute())


def measure_size(products: int, rounds: int, requests: int, seed: int) -> dict[str, Any]:
    """Seed, warm, fill, probe the hit path and run the jobs at one catalog size."""
    stack = Stack(Path(tempfile.mkdtemp(prefix="jj-scale-")), "")
    stack.start()
    server = RedisServer()
    try:
        database, seed_s = stack.seed_database(workload.SeedPlan(products, reserve=0, checker=0), seed)
        server.start()
        r, redis_pid = server.client(), server.process.pid if server.process else 0
        app, services, settings = service(
            mongodb_uri=stack.mongo.uri_for(database),
            redis_url=server.url,
            log_format="json",
            # nx-27017 counts by scanning every document: a list page's count at 100k products
            # outlasts the default socket timeout on a busy machine; a starved redis-server
            # would turn bulk fills into errors and hits into bypasses (x_cache_of_probed shows it).
            mongodb_timeout_ms=20_000,
            redis_timeout_ms=2_000,
        )
        cache, ids = services.require_cache(), workload.catalog_ids(products)
        hot = [ids[i * products // min(HOT, products // 2)] for i in range(min(HOT, products // 2))]
        cache.backend.incr_scores(cache.keys.popular_products, {pid: len(hot) - i for i, pid in enumerate(hot)})
        members = {query_member(ProductQuery(category=c, sort="price").normalized()): 100 for c in workload.CATEGORIES}
        cache.backend.incr_scores(cache.keys.popular_queries, members)
        empty = r.info("memory")["used_memory"]
        warm = timed_job(r, lambda: run_warm(services, settings).as_dict())
        after_warm = r.info("memory")["used_memory"]
        list_keys = [k for k in r.scan_iter(match=cache.keys.query_result_prefix("list") + "*") if b":lock" not in k]
        filter_keys = [*r.scan_iter(match=f"{cache.keys.root}:products:{{products}}:fgen:*")]
        page_bytes = memory_usage(r, list_keys)
        filter_bytes = memory_usage(r, [*filter_keys, cache.keys.filter_registry.encode()])
        batches = [ids[i : i + 200] for i in range(0, products, 200)]  # the warm job's batch
        fill = timed_job(r, lambda: {"products_filled": sum(map(cache.repository.warm_products, batches))})
        filled, full = fill["report"]["products_filled"], r.info("memory")
        sample = [cache.keys.product(pid).entry.encode() for pid in ids[:: max(1, products // 500)]]
        hit_paths = [f"/api/v1/products/{pid}" for pid in ids[:: max(1, products // 1000)]]
        list_paths = [f"/api/v1/products?{q}" for q in PAGE_QUERIES]
        verdicts = [app.test_client().get(p).headers.get("X-Cache", "none") for p in [*hit_paths, *list_paths]]
        cases = {"product": hit_paths, "list": list_paths, "live": ["/health/live"]}
        best, redis_per_hit = dict.fromkeys(cases, float("inf")), []
        for _ in range(rounds):  # interleaved: a busy moment falls on every case alike
            for name, paths in cases.items():
                redis_before = cpu_seconds(redis_pid)
                best[name] = min(best[name], cpu_per_request(app, paths, requests))
                if name == "product":
                    redis_per_hit.append((cpu_seconds(redis_pid) - redis_before) / requests)
        audit = timed_job(r, lambda: run_audit(services, settings).as_dict())
        cleanup = timed_job(r, lambda: run_cleanup(services, settings).as_dict())
        print(f"{products}: warm {warm['seconds']} s, product hit {best['product'] * 1e6:.0f} us", flush=True)
        popular = cache.keys.popular_products.encode()
        per_page = round((page_bytes + filter_bytes) / max(len(list_keys), 1), 1)
        return {
            "products": products,
            "seed_seconds": round(seed_s, 2),
            "service_settings": {
                name: getattr(settings, name, getattr(service_constants, name.upper(), None)) for name in SETTINGS_SHOWN
            },
            "hits": {
                "app_cpu_us": {name: round(s * 1e6, 1) for name, s in best.items()},
                "redis_cpu_us_per_product_hit": round(statistics.median(redis_per_hit) * 1e6, 1),
                "x_cache_of_probed": {v: verdicts.count(v) for v in set(verdicts)},
                "product_paths": len(hit_paths),
            },
            "redis": {
                "used_memory_empty": empty,
                "used_memory_after_warm": after_warm,
                "used_memory_full": full["used_memory"],
                "products_cached": warm["report"]["products_warmed"] + filled,
                "bytes_per_product": round((full["used_memory"] - after_warm) / max(filled, 1), 1),
                "memory_usage_per_product_entry": round(memory_usage(r, sample) / len(sample), 1),
                "pages_cached": len(list_keys),
                "memory_usage_per_page_entry": round(page_bytes / max(len(list_keys), 1), 1),
                "memory_usage_per_page_with_filter_keys": per_page,
                "popularity_bytes_per_member": round(memory_usage(r, [popular]) / len(hot), 1),
            },
            "jobs": {"warm": warm, "audit": audit, "cleanup": cleanup, "fill": fill},
        }
    finally:
        # While this size's MongoDB still answers: closing the client later would wait out
        # server selection on a stopped server to end its sessions.
        mongoengine.disconnect()
        server.close()
        stack.close()
        shutil.rmtree(stack.workdir, ignore_errors=True)


def sizing(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Redis memory for SIZING products from the largest run's slopes (popularity sets at their bound)."""
    largest = max(results["sizes"], key=lambda s: s["products"])["redis"]
    bound = results["sizes"][-1]["service_settings"]["popularity_max_members"]
    fixed = largest["used_memory_empty"] + 2 * bound * largest["popularity_bytes_per_member"]
    rows = []
    for n in SIZING:
        products_b = n * largest["bytes_per_product"]
        pages_b = n * PAGES_PER_PRODUCT * largest["memory_usage_per_page_with_filter_keys"]
        rows.append({"products": n, "products_mib": products_b / 2**20, "pages_mib": pages_b / 2**20})
        rows[-1]["total_mib"] = (products_b + pages_b + fixed) / 2**20
    return rows


def markdown(results: dict[str, Any]) -> str:
    """The measured table and the sizing table."""
    lines = [
        "| products | CPU per product hit | per list hit | /health/live (control) | Redis bytes per product "
        "| per page (+ filter keys) | warm: s, MongoDB queries | audit: s, queries (checked) "
        "| cleanup: s, queries (keys scanned) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in results["sizes"]:
        cpu, mem, (warm, audit, cleanup, _) = s["hits"]["app_cpu_us"], s["redis"], s["jobs"].values()
        lines.append(
            f"| {s['products']:,} | {cpu['product']:.0f} µs | {cpu['list']:.0f} µs | {cpu['live']:.0f} µs "
            f"| {mem['bytes_per_product']:.0f} | {mem['memory_usage_per_page_entry']:.0f} "
            f"({mem['memory_usage_per_page_with_filter_keys']:.0f}) | {warm['seconds']:.2f}, {warm['db_queries']} "
            f"| {audit['seconds']:.2f}, {audit['db_queries']} ({audit['report']['keys_checked']:,}) "
            f"| {cleanup['seconds']:.2f}, {cleanup['db_queries']} ({cleanup['report']['keys_scanned']:,}) |"
        )
    lines += ["", "| products | product entries | list pages | total used_memory |", "|---:|---:|---:|---:|"]
    for row in sizing(results):
        lines.append(
            f"| {row['products']:,} | {row['products_mib']:,.0f} MiB | {row['pages_mib']:,.0f} MiB "
            f"| {row['total_mib']:,.0f} MiB |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the sizes, write scale.json, print the tables."""
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1000,10000,100000", help="comma-separated catalog sizes (each >= 100)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds of the hit measurement")
    p.add_argument("--requests", type=int, default=2000, help="requests per case and round")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "performance")
    a = p.parse_args(argv)
    sizes = [int(x) for x in a.sizes.split(",") if x.strip()]
    if not sizes or min(sizes) < 100:
        p.error("--sizes takes catalog sizes of at least 100")
    listen_to_job_queries()
    mongodb = "external MongoDB" if os.environ.get("MONGODB_URI", "").startswith("mongodb") else "nx-27017"
    results: dict[str, Any] = {"settings": {"mongodb": mongodb, "hot_products": HOT, "rounds": a.rounds}, "sizes": []}
    results["settings"] |= {"requests": a.requests, "nproc": len(os.sched_getaffinity(0))}
    # The service logs an access line per request, as in production, to stderr, which its log
    # handler binds when the app is built: /dev/null, left open for the threads that outlive a size.
    real_stderr, sys.stderr = sys.stderr, open(os.devnull, "w")  # noqa: SIM115
    try:
        results["sizes"] = [measure_size(n, a.rounds, a.requests, a.seed) for n in sizes]
    finally:
        sys.stderr = real_stderr
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "scale.json").write_bytes(
        orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    )
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
