"""GET /api/v1/cache/stats: counts, ratios and windows, queries saved, jobs; documented in OpenAPI."""

from __future__ import annotations

from flask.testing import FlaskClient

from jollyjet.monitoring.history import History, Totals
from jollyjet.monitoring.job_status import record_run
from jollyjet.monitoring.stats import outcome_counts, queries_saved
from tests.conftest import TOKEN
from tests.support.factories import product_payload

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_stats_need_the_admin_token(client: FlaskClient) -> None:
    response = client.get("/api/v1/cache/stats")
    assert response.status_code == 401 and "Bearer" in response.get_json()["message"]


def test_stats_count_reads_per_kind_since_start_and_in_windows(client: FlaskClient) -> None:
    product = client.post("/api/v1/products", json=product_payload(category="s1"), headers=AUTH).get_json()
    before = client.get("/api/v1/cache/stats", headers=AUTH).get_json()
    for _ in range(4):
        client.get(f"/api/v1/products/{product['id']}")
    client.get("/api/v1/products?category=s1")
    after = client.get("/api/v1/cache/stats", headers=AUTH).get_json()

    def kind(body: dict, window: str, name: str) -> dict:  # type: ignore[type-arg]
        return body["requests"][window]["kinds"][name]  # type: ignore[no-any-return]

    assert kind(after, "since_start", "product")["hit"] - kind(before, "since_start", "product")["hit"] == 4
    assert kind(after, "since_start", "list")["miss"] - kind(before, "since_start", "list")["miss"] == 1
    assert set(after["requests"]) == {"since_start", "1m", "5m", "15m"}
    for window in ("1m", "5m", "15m"):
        assert after["requests"][window]["covered_s"] is not None
        assert kind(after, window, "product")["hit"] >= 4  # the history started at the first request
    everything = after["requests"]["since_start"]["all"]
    assert everything["reads"] == everything["hit"] + everything["miss"] + everything["bypass"]
    assert everything["hit_ratio"] == round(everything["hit"] / everything["reads"], 4)
    assert after["breaker"] == "closed" and after["pending_repairs"] == 0 and after["redis"] is None
    assert after["thresholds_breached"] == [] or all("alert" in b for b in after["thresholds_breached"])


def test_stats_show_the_last_audit_and_warm_and_each_jobs_status(client: FlaskClient) -> None:
    record_run("warm", "success", {"keys_warmed": 7, "duration_s": 0.1})
    record_run("audit", "failure", None)
    body = client.get("/api/v1/cache/stats", headers=AUTH).get_json()
    assert body["last_warm"] == {"keys_warmed": 7, "duration_s": 0.1}
    assert body["jobs"]["audit"]["last_outcome"] == "failure" and body["jobs"]["audit"]["last_success_at"] is None
    assert {"alert": "JollyJetJobFailing", "severity": "warning", "summary": "the last audit run failed",
            "value": None, "threshold": None} in body["thresholds_breached"]  # fmt: skip


def test_queries_saved_estimated_from_hits_and_measured_from_the_commands_sent() -> None:
    totals = Totals(
        0.0,
        requests={("product", "hit"): 90, ("product", "miss"): 10, ("list", "hit"): 5, ("list", "miss"): 5},
        db_reads={"product": 10, "list": 5},
        db_queries={"find": 15, "aggregate": 5, "insert": 3},
    )
    saved = queries_saved(totals)
    # A product read costs one command, a list page two (find + count).
    assert saved["estimated"] == 90 * 1 + 5 * 2
    # 20 read commands for 15 database reads, times 95 hits.
    assert saved["read_commands_per_database_read"] == round(20 / 15, 3) and saved["measured"] == round(95 * 20 / 15)
    counts = outcome_counts(totals)
    assert counts["all"] == {"hit": 95, "miss": 15, "bypass": 0, "reads": 110, "hit_ratio": round(95 / 110, 4)}
    assert counts["kinds"]["count"]["hit_ratio"] is None


def test_windows_count_from_the_newest_sample_old_enough() -> None:
    history = History()
    assert history.window(Totals(1000.0), 60) == (Totals(1000.0), None)  # no sample yet: since start
    for at, hits in [(0.0, 1.0), (500.0, 10.0), (700.0, 30.0), (950.0, 40.0)]:
        history.add(Totals(at, {("product", "hit"): hits}))
    now = Totals(1000.0, {("product", "hit"): 50.0})
    five_minutes, covered = history.window(now, 300)
    assert covered == 300.0 and five_minutes.requests[("product", "hit")] == 20.0
    fifteen_minutes, covered = history.window(now, 900)
    assert covered == 1000.0 and fifteen_minutes.requests[("product", "hit")] == 49.0
    one_minute, covered = history.window(now, 60)
    assert covered == 300.0 and one_minute.requests[("product", "hit")] == 20.0  # 10 s apart in practice


def test_the_endpoint_is_in_the_openapi_document(client: FlaskClient) -> None:
    spec = client.get("/api/openapi.json").get_json()
    stats = spec["paths"]["/api/v1/cache/stats"]["get"]
    assert stats["security"] == [{"bearerAuth": []}] and "200" in stats["responses"]
    assert "CacheStats" in spec["components"]["schemas"]
    assert "text/plain; version=0.0.4; charset=utf-8" in spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
