"""GET /api/v1/cache/stats: the registry's since-start counts and ratios, queries saved, errors, jobs; in OpenAPI."""

from __future__ import annotations

from flask.testing import FlaskClient
from prometheus_client import REGISTRY

from jollyjet.ops.admin import Recorded, since_start
from jollyjet.ops.jobs import record_run
from tests.conftest import TOKEN
from tests.support.factories import product_payload

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_stats_need_the_admin_token(client: FlaskClient) -> None:
    response = client.get("/api/v1/cache/stats")
    assert response.status_code == 401 and "Bearer" in response.get_json()["message"]


def test_stats_count_reads_per_kind_since_start_as_the_registry_does(client: FlaskClient) -> None:
    product = client.post("/api/v1/products", json=product_payload(category="s1"), headers=AUTH).get_json()
    before = client.get("/api/v1/cache/stats", headers=AUTH).get_json()
    for _ in range(4):
        client.get(f"/api/v1/products/{product['id']}")
    client.get("/api/v1/products?category=s1")
    after = client.get("/api/v1/cache/stats", headers=AUTH).get_json()

    def kind(body: dict, name: str) -> dict:  # type: ignore[type-arg]
        return body["requests"]["kinds"][name]  # type: ignore[no-any-return]

    assert kind(after, "product")["hit"] - kind(before, "product")["hit"] == 4
    assert kind(after, "list")["miss"] - kind(before, "list")["miss"] == 1
    # The same figures /metrics exposes: the process registry (the unit tests run in memory).
    registry = REGISTRY.get_sample_value("jollyjet_cache_requests_total", {"kind": "product", "result": "hit"})
    assert kind(after, "product")["hit"] == registry
    everything = after["requests"]["all"]
    assert everything["reads"] == everything["hit"] + everything["miss"] + everything["bypass"]
    assert everything["hit_ratio"] == round(everything["hit"] / everything["reads"], 4)
    assert set(after) == {
        "requests", "db_queries_saved", "errors", "breaker", "breaker_open_anywhere", "redis", "pending_repairs",
        "last_audit", "last_warm", "jobs",
    }  # fmt: skip
    assert set(after["errors"]) == {"redis_calls", "cache_writes", "breaker_opens"}
    assert after["breaker"] == "closed" and after["pending_repairs"] == 0 and after["redis"] is None


def test_stats_show_the_last_audit_and_warm_and_each_jobs_status(client: FlaskClient) -> None:
    record_run("warm", "success", {"keys_warmed": 7, "duration_s": 0.1})
    record_run("audit", "failure", None)
    body = client.get("/api/v1/cache/stats", headers=AUTH).get_json()
    assert body["last_warm"] == {"keys_warmed": 7, "duration_s": 0.1}
    assert body["jobs"]["audit"]["last_outcome"] == "failure" and body["jobs"]["audit"]["last_success_at"] is None


def test_queries_saved_estimated_from_hits_and_measured_from_the_commands_sent() -> None:
    def requests(kind: str, result: str, n: float) -> tuple[str, dict[str, str], float]:
        return ("jollyjet_cache_requests_total", {"kind": kind, "result": result}, n)

    recorded = Recorded(
        [
            requests("product", "hit", 90), requests("product", "miss", 10),
            requests("list", "hit", 5), requests("list", "miss", 5),
            ("jollyjet_cache_db_reads_total", {"kind": "product"}, 10),
            ("jollyjet_cache_db_reads_total", {"kind": "list"}, 5),
            ("jollyjet_db_queries_total", {"operation": "find"}, 15),
            ("jollyjet_db_queries_total", {"operation": "aggregate"}, 5),
            ("jollyjet_db_queries_total", {"operation": "insert"}, 3),
            ("jollyjet_redis_command_duration_seconds_count", {"operation": "get", "result": "error"}, 2),
            ("jollyjet_redis_command_duration_seconds_count", {"operation": "get", "result": "ok"}, 40),
        ]
    )  # fmt: skip
    figures = since_start(recorded)
    saved = figures["db_queries_saved"]
    # A product read costs one command, a list page two (find + count).
    assert saved["estimated"] == 90 * 1 + 5 * 2
    # 20 read commands for 15 database reads, times 95 hits.
    assert saved["read_commands_per_database_read"] == round(20 / 15, 3) and saved["measured"] == round(95 * 20 / 15)
    assert saved["db_queries"] == {"aggregate": 5, "find": 15, "insert": 3}
    counts = figures["requests"]
    assert counts["all"] == {"hit": 95, "miss": 15, "bypass": 0, "reads": 110, "hit_ratio": round(95 / 110, 4)}
    assert counts["kinds"]["count"]["hit_ratio"] is None
    assert figures["errors"] == {"redis_calls": 2, "cache_writes": 0, "breaker_opens": 0}


def test_the_endpoint_is_in_the_openapi_document(client: FlaskClient) -> None:
    spec = client.get("/api/openapi.json").get_json()
    stats = spec["paths"]["/api/v1/cache/stats"]["get"]
    assert stats["security"] == [{"bearerAuth": []}] and "200" in stats["responses"]
    assert "CacheStats" in spec["components"]["schemas"]
    assert "text/plain; version=0.0.4; charset=utf-8" in spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
