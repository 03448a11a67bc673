"""Scale run: the service at 1k, 10k and 100k products, in process, on a real redis-server and nx-27017.

    nice -n 10 .venv/bin/python -m bench.scale [--sizes 1000,10000,100000] [--out docs/performance]
    .venv/bin/python -m bench.scale --render docs/performance/scale.json   # tables and plot again

Per size, on a fresh redis-server and MongoDB (bench/stack.py: nx-27017, or MONGODB_URI)
seeded in bulk (bench/catalog.py):
  warm     popularity names HOT products and the first page of one list per category; the
           warm job (run_warm, the Celery task's entry point) fills them into an empty cache
  fill     every other product through the same batched, leased fill (warm_products):
           Redis memory per product is INFO used_memory's growth over it, per product
  pages    MEMORY USAGE of the cached list pages and of the filter keys they are guarded by
  hits     CPU per cached hit, as bench/hit_cpu.py measures it (the app called as a WSGI
           callable, process CPU per request, minimum of interleaved rounds), for product
           reads spread over the whole catalog, list pages and /health/live (the control:
           it touches no cache, so its drift is the machine's)
  audit    run_audit with the default settings (20% sample, at most 20,000 keys)
  cleanup  run_cleanup with the default settings
A job's MongoDB queries are the commands its thread sent (a pymongo command listener; the
process's jollyjet_db_queries_total also counts the recovery fence's background poll, and
is kept beside them); its Redis commands are INFO's total_commands_processed. Results go
to scale.json, and the plot (scale.png) is drawn from that file.
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

from bench import catalog
from bench.hit_cpu import TOKEN, cpu_per_request
from bench.machine import machine
from bench.metrics import db_queries_between
from bench.stack import Stack, cpu_seconds

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "docs" / "performance"
HOT = 1000  # products popularity names (the warm job fills its top 500 of them)
PAGE_QUERIES = [f"category={c}&sort=price" for c in catalog.CATEGORIES]
# For the sizing table: cached pages per product (a full walk of one listing of the
# catalog, 20 items a page), the fixed part (popularity sets at their default bound).
PAGES_PER_PRODUCT = 1 / 20
SIZING = (100_000, 1_000_000, 10_000_000)
MONGODB_TIMEOUT_MS = 20_000
REDIS_TIMEOUT_MS = 2_000
# The service's settings the figures depend on (defaults but the two above), kept with each size's results.
SETTINGS_SHOWN = (
    "mongodb_timeout_ms",
    "redis_socket_timeout_ms",
    "cache_product_ttl_s",
    "cache_list_ttl_s",
    "warm_top_products",
    "warm_top_queries",
    "audit_sample_rate",
    "audit_max_keys",
    "audit_batch",
    "cleanup_scan_batch",
    "popularity_max_members",
)


def db_queries() -> dict[str, float]:
    """jollyjet_db_queries_total by operation, as this process's /metrics would show it."""
    from jollyjet.ops.metrics import metrics

    return {
        s.labels["operation"]: s.value
        for m in metrics().db_queries.collect()
        for s in m.samples
        if s.name.endswith("_total")
    }


class ThreadQueries(monitoring.CommandListener):
    """MongoDB commands sent by one thread: a job's own, without the recovery fence's background poll.

    pymongo tells listeners of a command in the thread that sends it; registered globally,
    before the app's client exists, so that client tells this one too."""

    def __init__(self) -> None:
        self.thread = 0
        self.counts: Counter[str] = Counter()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        """Count the command when the watched thread sent it."""
        name = event.command_name
        if threading.get_ident() == self.thread and name != "ping":
            collection = event.command.get("collection" if name == "getMore" else name)
            self.counts[f"{name} {collection}" if isinstance(collection, str) else name] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        """Counted when sent."""

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        """Counted when sent."""


JOB_QUERIES = ThreadQueries()


@functools.cache
def listen_to_job_queries() -> None:
    """Register JOB_QUERIES with pymongo, once per process (main may run more than once in one)."""
    monitoring.register(JOB_QUERIES)


def timed_job(redis_client: Any, job: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one job; its duration, MongoDB commands (its own, and the process's), Redis commands, its report."""
    before_db, before_redis = db_queries(), redis_client.info("stats")["total_commands_processed"]
    JOB_QUERIES.thread, JOB_QUERIES.counts = threading.get_ident(), Counter()
    started = time.monotonic()
    report = job()
    seconds = time.monotonic() - started
    JOB_QUERIES.thread = 0
    process = db_queries_between(before_db, db_queries()) or {}
    redis_commands = redis_client.info("stats")["total_commands_processed"] - before_redis - 2  # the INFOs
    return {
        "seconds": round(seconds, 3),
        "db_queries": sum(JOB_QUERIES.counts.values()),
        "db_queries_by_command": dict(JOB_QUERIES.counts),  # "find products", ...
        # jollyjet_db_queries_total's growth meanwhile: the job's, and the fence's poll (once per
        # poll interval, in a thread of its own), which is why it grows with the job's duration.
        "db_queries_process": int(sum(process.values())),
        "redis_commands": redis_commands,
        "report": report,
    }


def memory_usage(redis_client: Any, keys: list[bytes]) -> int:
    """MEMORY USAGE summed over keys (every value sample counted)."""
    pipe = redis_client.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key, samples=0)
    return sum(n or 0 for n in pipe.execute())


def measure_size(products: int, rounds: int, requests: int, seed: int, log: Callable[[str], None]) -> dict[str, Any]:
    """Seed, warm, fill, probe the hit path and run the jobs at one catalog size."""
    from jollyjet import settings as jj_settings
    from jollyjet.app_factory import build_services, create_app
    from jollyjet.cache.events import query_member
    from jollyjet.jobs.audit import run_audit
    from jollyjet.jobs.cleanup import run_cleanup
    from jollyjet.jobs.warm import run_warm
    from jollyjet.products.record import ProductQuery
    from jollyjet.settings import load_settings

    stack = Stack(Path(tempfile.mkdtemp(prefix="jj-scale-")), TOKEN)
    stack.start()
    r = stack.redis()
    try:
        database, seed_s = stack.seed_database(catalog.SeedPlan(products, reserve=0, checker=0), seed)
        log(f"{products}: seeded in {seed_s:.1f} s")
        settings = load_settings(
            env="testing",
            mongodb_uri=stack.mongo.uri_for(database),
            redis_url=stack.redis_server.url,
            api_tokens_raw=TOKEN,
            log_format="json",
            # nx-27017 counts by scanning every document (50-100 µs each here): a list page's
            # count at 100k products outlasts the default 10 s socket timeout on a busy machine.
            mongodb_timeout_ms=MONGODB_TIMEOUT_MS,
            # The machine is shared: a redis-server starved for 100 ms (the default) would turn
            # the bulk fills into errors and hits into bypasses (x_cache_of_probed would show it).
            redis_socket_timeout_ms=REDIS_TIMEOUT_MS,
        )
        services = build_services(settings)
        app = create_app(settings, services)
        cache = services.require_cache()
        ids = catalog.catalog_ids(products)
        hot_count = min(HOT, products // 2)
        hot = [ids[i * products // hot_count] for i in range(hot_count)]  # spread over the catalog
        cache.backend.incr_scores(cache.keys.popular_products, {pid: len(hot) - i for i, pid in enumerate(hot)})
        page_queries = [ProductQuery(category=c, sort="price") for c in catalog.CATEGORIES]
        cache.backend.incr_scores(cache.keys.popular_queries, {query_member(q.normalized()): 100 for q in page_queries})
        empty = r.info("memory")["used_memory"]
        warm = timed_job(r, lambda: run_warm(services, settings).as_dict())
        after_warm = r.info("memory")["used_memory"]
        log(f"{products}: warm {warm['seconds']} s, {warm['db_queries']} MongoDB queries")

        list_keys = [k for k in r.scan_iter(match=cache.keys.query_result_prefix("list") + "*") if b":lock" not in k]
        filter_keys = list(r.scan_iter(match=f"{cache.keys.root}:products:{{products}}:fgen:*"))
        page_bytes = memory_usage(r, list_keys)
        filter_bytes = memory_usage(r, [*filter_keys, cache.keys.filter_registry.encode()])

        def fill_rest() -> dict[str, int]:
            landed = sum(cache.repository.warm_products(ids[i : i + 200]) for i in range(0, products, 200))
            return {"products_filled": landed}  # 200: the warm job's batch

        fill = timed_job(r, fill_rest)
        filled = fill["report"]["products_filled"]
        full = r.info("memory")
        log(f"{products}: filled {filled} more in {fill['seconds']} s")
        sample = [cache.keys.product(pid).entry.encode() for pid in ids[:: max(1, products // 500)]]

        hit_paths = [f"/api/v1/products/{pid}" for pid in ids[:: max(1, products // 1000)]]
        list_paths = [f"/api/v1/products?{q}" for q in PAGE_QUERIES]
        verdicts = [dict(app.test_client().get(p).headers).get("X-Cache", "none") for p in [*hit_paths, *list_paths]]
        cases = {"product": hit_paths, "list": list_paths, "live": ["/health/live"]}
        best = dict.fromkeys(cases, float("inf"))
        redis_per_hit: list[float] = []
        for _ in range(rounds):  # interleaved: a busy moment falls on every case alike
            for name, paths in cases.items():
                redis_before = cpu_seconds(stack.redis_server.process.pid)  # type: ignore[union-attr]
                best[name] = min(best[name], cpu_per_request(app, paths, requests))
                if name == "product":
                    spent = cpu_seconds(stack.redis_server.process.pid) - redis_before  # type: ignore[union-attr]
                    redis_per_hit.append(spent / requests)
        log(f"{products}: product hit {best['product'] * 1e6:.0f} us CPU, list hit {best['list'] * 1e6:.0f} us")

        audit = timed_job(r, lambda: run_audit(services, settings).as_dict())
        log(f"{products}: audit {audit['seconds']} s, {audit['db_queries']} MongoDB queries")
        cleanup = timed_job(r, lambda: run_cleanup(services, settings).as_dict())
        log(f"{products}: cleanup {cleanup['seconds']} s, {cleanup['db_queries']} MongoDB queries")
        return {
            "products": products,
            "seed_seconds": round(seed_s, 2),
            "service_settings": {
                name: getattr(settings, name, getattr(jj_settings, name.upper(), None)) for name in SETTINGS_SHOWN
            },
            "hits": {
                "app_cpu_us": {name: round(s * 1e6, 1) for name, s in best.items()},
                "redis_cpu_us_per_product_hit": round(statistics.median(redis_per_hit) * 1e6, 1),
                "x_cache_of_probed": {v: verdicts.count(v) for v in set(verdicts)},
                "product_paths": len(hit_paths),
                "rounds": rounds,
                "requests_per_round": requests,
            },
            "redis": {
                "used_memory_empty": empty,
                "used_memory_after_warm": after_warm,
                "used_memory_full": full["used_memory"],
                "used_memory_rss_full": full["used_memory_rss"],
                "keys_full": r.dbsize(),
                "products_cached": warm["report"]["products_warmed"] + filled,
                "bytes_per_product": round((full["used_memory"] - after_warm) / max(filled, 1), 1),
                "memory_usage_per_product_entry": round(memory_usage(r, sample) / len(sample), 1),
                "pages_cached": len(list_keys),
                "memory_usage_per_page_entry": round(page_bytes / max(len(list_keys), 1), 1),
                "memory_usage_per_page_with_filter_keys": round(
                    (page_bytes + filter_bytes) / max(len(list_keys), 1), 1
                ),
                "popularity_bytes_per_member": round(
                    memory_usage(r, [cache.keys.popular_products.encode()]) / max(len(hot), 1), 1
                ),
            },
            "jobs": {"warm": warm, "fill": fill, "audit": audit, "cleanup": cleanup},
        }
    finally:
        r.close()
        # While this size's MongoDB still answers: closing the client later (the next size's
        # connect_mongo) would wait out server selection on a stopped server to end its sessions.
        mongoengine.disconnect()
        stack.close()
        shutil.rmtree(stack.workdir, ignore_errors=True)


def sizing(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Redis memory for SIZING products from the largest run's slopes (PAGES_PER_PRODUCT, popularity at its bound)."""
    largest = max(results["sizes"], key=lambda s: s["products"])["redis"]
    popularity_max = results["sizes"][-1]["service_settings"]["popularity_max_members"]
    fixed = largest["used_memory_empty"] + 2 * popularity_max * largest["popularity_bytes_per_member"]
    rows = []
    for n in SIZING:
        products_b = n * largest["bytes_per_product"]
        pages_b = n * PAGES_PER_PRODUCT * largest["memory_usage_per_page_with_filter_keys"]
        rows.append(
            {
                "products": n,
                "products_mib": products_b / 2**20,
                "pages_mib": pages_b / 2**20,
                "total_mib": (products_b + pages_b + fixed) / 2**20,
            }
        )
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
        cpu, mem, jobs = s["hits"]["app_cpu_us"], s["redis"], s["jobs"]
        warm, audit, cleanup = jobs["warm"], jobs["audit"], jobs["cleanup"]
        lines.append(
            f"| {s['products']:,} | {cpu['product']:.0f} µs | {cpu['list']:.0f} µs | {cpu['live']:.0f} µs "
            f"| {mem['bytes_per_product']:.0f} | {mem['memory_usage_per_page_entry']:.0f} "
            f"({mem['memory_usage_per_page_with_filter_keys']:.0f}) "
            f"| {warm['seconds']:.2f}, {warm['db_queries']} "
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


def plot(results: dict[str, Any], out: Path) -> Path:
    """scale.png: CPU per hit, Redis memory, job durations and MongoDB queries against catalog size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = results["sizes"]
    xs = [s["products"] for s in sizes]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for name in ("product", "list", "live"):
        axes[0].plot(xs, [s["hits"]["app_cpu_us"][name] for s in sizes], marker="o", label=name)
    axes[0].set_ylim(bottom=0)
    axes[0].set_title("App CPU per request (µs)")
    for key, label in (("bytes_per_product", "per product"), ("memory_usage_per_page_with_filter_keys", "per page")):
        axes[1].plot(xs, [s["redis"][key] for s in sizes], marker="o", label=label)
    for x, s in zip(xs, sizes, strict=True):
        axes[1].annotate(
            f"{s['redis']['used_memory_full'] / 2**20:.0f} MiB",
            (x, s["redis"]["bytes_per_product"]),
            textcoords="offset points",
            xytext=(0, -14),
            ha="center",
            fontsize=8,
        )
    axes[1].set_ylim(0, 1.3 * max(s["redis"]["memory_usage_per_page_with_filter_keys"] for s in sizes))
    axes[1].set_title("Redis bytes (label: used_memory, all cached)")
    for job, color in (("warm", "#36c"), ("audit", "#c66"), ("cleanup", "#6a6")):
        axes[2].plot(xs, [s["jobs"][job]["seconds"] for s in sizes], marker="o", color=color, label=f"{job} s")
        axes[2].plot(
            xs,
            [s["jobs"][job]["db_queries"] for s in sizes],
            marker="x",
            linestyle="--",
            color=color,
            label=f"{job} MongoDB queries",
        )
    axes[2].set_yscale("log")
    axes[2].set_title("Job runs: seconds and MongoDB queries")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("products")
        ax.legend(fontsize=8)
    fig.suptitle(f"Scale run: {results['machine']['nproc']} cores, {results['settings']['mongodb']}", fontsize=10)
    fig.tight_layout()
    path = out / "scale.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    """Run the sizes (or re-render a results file), write scale.json and scale.png, print the tables."""
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1000,10000,100000", help="comma-separated catalog sizes (each >= 100)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds of the hit measurement")
    p.add_argument("--requests", type=int, default=2000, help="requests per case and round")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--render", type=Path, help="only re-render the tables and plot of this scale.json")
    a = p.parse_args(argv)
    if a.render is not None:
        results = orjson.loads(a.render.read_bytes())
    else:
        listen_to_job_queries()
        sizes = [int(x) for x in a.sizes.split(",") if x.strip()]
        if not sizes or min(sizes) < 100:
            p.error("--sizes takes catalog sizes of at least 100")
        results = {
            "machine": machine(),
            "settings": {
                "mongodb": "external MongoDB"
                if os.environ.get("MONGODB_URI", "").startswith("mongodb")
                else "nx-27017",
                "hot_products": HOT,
                "page_queries": PAGE_QUERIES,
                "rounds": a.rounds,
                "requests": a.requests,
            },
            "sizes": [],
        }
        # The service logs (an access line per request, as in production) to stderr, which its
        # log handler binds when the app is built: to /dev/null, left open for the apps' threads
        # (the recovery fence's poll) that outlive their size; progress goes to stdout.
        real_stderr, sys.stderr = sys.stderr, open(os.devnull, "w")  # noqa: SIM115
        try:
            for n in sizes:
                results["sizes"].append(measure_size(n, a.rounds, a.requests, a.seed, lambda s: print(s, flush=True)))
        finally:
            sys.stderr = real_stderr
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "scale.json").write_bytes(
            orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
        )
        results = orjson.loads((a.out / "scale.json").read_bytes())  # the plot is drawn from the file
    print(markdown(results))
    print(f"plot: {plot(results, a.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
