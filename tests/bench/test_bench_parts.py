"""The benchmark's parts that need no servers: the gunicorn command line, /metrics figures, the workload."""

from __future__ import annotations

from collections import Counter

import pytest

from bench.__main__ import merge_rounds
from bench.measure import figures, total
from bench.stack import web_argv
from bench.workload import CATALOG_PREFIX, POPULAR_COUNTS, POPULAR_LISTS, RESERVE_PREFIX, Mix, Request, Workload
from tests.support.procfile import command_argv, procfile_env, read_procfile

pytestmark = pytest.mark.bench


def test_web_argv_is_the_procfile_line_with_the_app_as_target() -> None:
    procfile = command_argv(read_procfile()["web"], procfile_env(PORT="8123", WEB_CONCURRENCY="3", WEB_THREADS="5"))
    assert web_argv(list(procfile)) == web_argv(list(procfile), "app:app")  # the service runs as deployed
    assert "app:app" in procfile  # the target replaced below
    argv = web_argv(list(procfile), "bench.apps:naive_app()")
    assert argv.count("bench.apps:naive_app()") == 1 and "app:app" not in argv
    assert argv[argv.index("--bind") + 1] == "127.0.0.1:8123"
    assert argv[argv.index("--workers") + 1] == "3"
    assert argv[argv.index("--threads") + 1] == "5"
    assert "--access-logfile" not in argv  # one access line per request: the service's own


def test_metrics_are_summed_without_the_background() -> None:
    counts = {
        'jollyjet_db_queries_total{operation="find"}': 3.0,
        'jollyjet_db_queries_total{operation="ping"}': 7.0,
        'jollyjet_redis_command_duration_seconds_count{operation="get",result="ok"}': 2.0,
        'jollyjet_redis_command_duration_seconds_count{operation="incr_scores",result="ok"}': 5.0,
        'jollyjet_cache_requests_total{kind="product",result="hit"}': 4.0,
        'jollyjet_cache_requests_total{kind="product",result="miss"}': 1.0,
    }
    assert total(counts, "jollyjet_db_queries_total") == 3
    assert total(counts, "jollyjet_cache_requests_total", 'result="hit"') == 4
    app = figures({"metrics": counts, "redis": {"hmget": 2, "keyspace_hits": 9}, "wall_s": 1.0}, 4)
    assert (app["db_queries"], app["redis_round_trips"], app["hits"], app["hit_ratio"]) == (3, 2, 4, 0.8)
    naive = figures({"metrics": {}, "redis": {"get": 5, "keyspace_hits": 4, "keyspace_misses": 1}, "wall_s": 1}, 5)
    assert (naive["redis_round_trips"], naive["hits"], naive["hit_ratio"]) == (5, 4, 0.8)


@pytest.mark.parametrize(
    ("method", "path", "kind"),
    [
        ("GET", "/api/v1/products/5e11c0de000000a000000001", "product"),
        ("GET", "/api/v1/products?category=audio", "list"),
        ("GET", "/api/v1/products/count", "count"),
        ("PATCH", "/api/v1/products/5e11c0de000000a000000001", "write"),
        ("POST", "/api/v1/products", "write"),
    ],
)
def test_request_kind(method: str, path: str, kind: str) -> None:
    assert Request(method, path).kind == kind


def test_zipf_favours_low_ranks_and_stays_in_range() -> None:
    load = Workload(1000, Mix(zipf_s=1.1), seed=3, reserve=range(0), nonce="t")
    draws = Counter(load.rank() for _ in range(20000))
    assert min(draws) >= 0 and max(draws) < 1000
    assert draws[0] > draws[1] > draws[10] > draws.get(500, 0)


def test_python_workload_is_deterministic_and_follows_the_mix() -> None:
    mix = Mix()

    def sequence() -> list[tuple[str, str]]:
        workload = Workload(1000, mix, seed=11, reserve=range(50), nonce="t")
        return [(r.method, r.path) for r in workload.mixed(20000)]

    first = sequence()
    assert first == sequence()
    kinds = Counter(
        "write"
        if method != "GET"
        else "list"
        if path in POPULAR_LISTS
        else "count"
        if path in POPULAR_COUNTS
        else "product"
        for method, path in first
    )
    assert kinds["write"] / 20000 == pytest.approx(mix.p_write, abs=0.01)
    assert kinds["list"] / 20000 == pytest.approx(mix.p_list, abs=0.01)
    assert kinds["count"] / 20000 == pytest.approx(mix.p_count, abs=0.01)
    deletes = [path for method, path in first if method == "DELETE"]
    assert deletes and all(RESERVE_PREFIX in path for path in deletes)
    assert len(set(deletes)) == len(deletes) <= 50  # each reserve product deleted once, then updates
    reads = [path for method, path in first if method == "GET" and path not in POPULAR_LISTS + POPULAR_COUNTS]
    assert all(CATALOG_PREFIX in path for path in reads)


def test_rounds_merge_into_one_phase() -> None:
    def round_result(requests: int, p50: int) -> dict[str, object]:
        latency = {"50": p50, "90": 2 * p50, "95": 3 * p50, "99": 4 * p50, "99.9": 5 * p50, "mean": p50, "stdev": 1}
        wrk = {
            "duration_us": 2_000_000,
            "requests": requests,
            "requests_per_s": requests / 2,
            "bytes": 10,
            "errors": {"connect": 0, "read": 0, "write": 0, "status": 1, "timeout": 0},
            "latency_us": {**latency, "max": 9 * p50},
            "generator_cpu_s": 0.5,
            "connections": 4,
            "threads": 2,
        }
        raw = {"metrics": {}, "redis": {"get": requests}, "wall_s": 2.0}
        return {"wrk": wrk, "raw": raw}

    merged = merge_rounds([round_result(100, 10), round_result(300, 30), round_result(200, 20)])
    assert merged["wrk"]["requests"] == 600
    assert merged["wrk"]["requests_per_s"] == pytest.approx(100)
    assert merged["wrk"]["latency_us"]["50"] == 20  # the median round's percentile
    assert merged["wrk"]["latency_us"]["max"] == 270
    assert merged["wrk"]["errors"]["status"] == 3
    assert merged["app"]["requests"] == 600
    assert merged["app"]["redis_commands"] == {"get": 600}
