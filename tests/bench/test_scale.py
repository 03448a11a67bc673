"""bench/scale.py at 200 and 1,000 products: the results file's shape and counts that must hold (no timing)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import orjson
import pytest

from bench import scale

pytestmark = [pytest.mark.bench, pytest.mark.slow]
SIZES = (200, 1000)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = Path(tmp_path_factory.mktemp("scale"))
    sizes = ",".join(map(str, SIZES))
    assert scale.main(["--sizes", sizes, "--rounds", "1", "--requests", "50", "--out", str(out)]) == 0
    return orjson.loads((out / "scale.json").read_bytes())


def test_every_size_is_measured(results: dict[str, Any]) -> None:
    assert [s["products"] for s in results["sizes"]] == list(SIZES)
    assert results["settings"]["mongodb"] in ("nx-27017", "external MongoDB")
    for size in results["sizes"]:
        assert set(size["jobs"]) == {"warm", "fill", "audit", "cleanup"}
        assert all(cpu > 0 for cpu in size["hits"]["app_cpu_us"].values())
        # Every probed product and list page was a hit: the CPU figures are of hits.
        probed = size["hits"]["product_paths"] + len(scale.PAGE_QUERIES)
        assert size["hits"]["x_cache_of_probed"] == {"HIT": probed}


def test_redis_memory_is_counted_per_product_and_page(results: dict[str, Any]) -> None:
    for size in results["sizes"]:
        redis = size["redis"]
        assert redis["products_cached"] == size["products"]
        assert redis["pages_cached"] == len(scale.PAGE_QUERIES)
        assert redis["bytes_per_product"] > 0 and redis["memory_usage_per_product_entry"] > 0
        assert redis["memory_usage_per_page_with_filter_keys"] > redis["memory_usage_per_page_entry"] > 0
        assert redis["used_memory_full"] > redis["used_memory_after_warm"] > redis["used_memory_empty"]
    sizing = scale.sizing(results)
    assert [row["products"] for row in sizing] == list(scale.SIZING)
    assert sizing[0]["total_mib"] < sizing[1]["total_mib"] < sizing[2]["total_mib"]


def test_jobs_do_what_they_sample(results: dict[str, Any]) -> None:
    for size in results["sizes"]:
        jobs, n = size["jobs"], size["products"]
        hot = min(scale.HOT, n // 2)
        assert jobs["warm"]["report"]["products_warmed"] == min(hot, size["service_settings"]["warm_top_products"])
        assert jobs["warm"]["report"]["queries_warmed"] == len(scale.PAGE_QUERIES)
        assert jobs["fill"]["report"]["products_filled"] == n - jobs["warm"]["report"]["products_warmed"]
        audit = jobs["audit"]
        assert audit["report"]["keys_scanned"] == n and audit["report"]["keys_checked"] > 0
        # One products query per batch of sampled entries (not per SCAN page: 5 of them at 1,000).
        batches = math.ceil(audit["report"]["keys_checked"] / size["service_settings"]["audit_batch"])
        assert audit["db_queries_by_command"]["find products"] <= batches
        assert jobs["cleanup"]["report"]["keys_scanned"] >= n
        assert all(job["db_queries"] > 0 and job["redis_commands"] > 0 for job in jobs.values())
