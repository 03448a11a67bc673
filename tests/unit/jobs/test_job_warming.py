"""Read popularity and cache warming: what is counted, what is filled, and what warming must never do."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from jollyjet.cache.fence import RepairLog
from jollyjet.cache.keys import CacheKeys, PopularityTracker, TtlPolicy, query_member
from jollyjet.db import connect_mongo
from jollyjet.extensions import services_of
from jollyjet.jobs import warm as warming
from jollyjet.jobs.warm import query_from_member, warm_cache
from jollyjet.products.catalog import CachedProductRepository, CachePolicy
from jollyjet.products.record import ProductQuery, ProductRecord, parse
from jollyjet.products.repository import MongoProductRepository
from tests.conftest import make_settings
from tests.support.events import EventCounter
from tests.support.fake_cache import FakeCacheBackend
from tests.support.job_stack import RepositoryWithHook, job_app, product_values

PID = "0123456789abcdef01234567"


@dataclass
class Stack:
    database: RepositoryWithHook
    cache: FakeCacheBackend
    keys: CacheKeys
    popularity: PopularityTracker
    repo: CachedProductRepository

    def create(self) -> ProductRecord:
        return self.repo.create(product_values())

    def evict(self, product_id: str) -> None:
        """The entry expired (or was evicted under memory pressure)."""
        assert self.cache.delete(self.keys.product(product_id).entry) == 1

    def cached(self, product_id: str) -> ProductRecord | None:
        entry = self.cache.get_versioned(self.keys.product(product_id).entry)
        return None if entry is None or entry.payload is None else parse(entry.payload)

    def warm(self, top_products: int = 100, top_queries: int = 0) -> warming.WarmReport:
        return warm_cache(self.repo, self.popularity, top_products, top_queries)


@pytest.fixture
def stack() -> Stack:
    """The cached repository over a get_many-counting Mongo repository; every read counted (rate 1)."""
    connect_mongo(make_settings())
    database = RepositoryWithHook(MongoProductRepository())
    cache = FakeCacheBackend()
    keys = CacheKeys("warm")
    popularity = PopularityTracker(cache, keys, sample_rate=1.0)
    repo = CachedProductRepository(
        database,
        cache,
        keys,
        TtlPolicy(0.1),
        CachePolicy(),
        RepairLog(),
        EventCounter(),
        popularity,
    )
    return Stack(database, cache, keys, popularity, repo)


# --- popularity -----------------------------------------------------------------------------------
def test_api_reads_of_products_and_list_queries_are_counted() -> None:
    app = job_app(FakeCacheBackend(), popularity_sample_rate=1.0)
    services = services_of(app)
    client = app.test_client()
    often, once = (services.products.create(product_values()) for _ in range(2))
    for _ in range(3):
        assert client.get(f"/api/v1/products/{often.id}").status_code == 200
    assert client.get(f"/api/v1/products/{once.id}").status_code == 200
    assert client.get(f"/api/v1/products/{PID}").status_code == 404  # unknown ids are not counted
    for page in (1, 3):  # every page counts for the query's first page, which warming fills
        assert client.get(f"/api/v1/products?category=home&page={page}&page_size=2").status_code == 200

    assert services.cache.popularity is not None
    assert services.cache.popularity.top_products(10) == [often.id, once.id]
    assert services.cache.popularity.top_queries(10) == [
        {"category": "home", "sort": "-created_at", "page": 1, "page_size": 2}
    ]


def test_sampled_reads_are_weighted_so_the_expected_score_is_the_read_count() -> None:
    backend = FakeCacheBackend()
    keys = CacheKeys("pop")
    tracker = PopularityTracker(backend, keys, sample_rate=0.1, rng=random.Random(3))
    for _ in range(500):
        tracker.product_read(PID)
    replay = random.Random(3)
    sampled = sum(replay.random() < 0.1 for _ in range(500))  # one draw per read

    score = backend.client.zscore(keys.popular_products, PID)
    assert score is not None
    assert score == pytest.approx(sampled * 10)  # each sampled read weighs 1 / 0.1
    assert 0 < sampled < 500 and abs(score - 500) <= 150  # this seed's estimate of the 500 reads


# --- products -------------------------------------------------------------------------------------
def test_warming_fills_missing_popular_products_with_one_query_per_batch(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(warming, "_BATCH", 3)
    products = [stack.create() for _ in range(7)]
    for rank, product in enumerate(products):
        for _ in range(10 - rank):
            stack.repo.get_body(product.id)  # products[0] is the most read
    for product in products:
        stack.evict(product.id)
    stack.database.get_many_calls.clear()

    report = stack.warm(top_products=5)

    top5 = [p.id for p in products[:5]]
    assert stack.database.get_many_calls == [top5[:3], top5[3:]]
    assert (report.products_considered, report.products_warmed, report.products_skipped) == (5, 5, 0)
    assert [stack.cached(p.id) for p in products] == [*products[:5], None, None]
    assert report.as_dict()["keys_warmed"] == 5


def test_already_cached_products_are_neither_read_nor_rewritten(stack: Stack) -> None:
    products = [stack.create() for _ in range(4)]
    for product in products:
        stack.repo.get_body(product.id)
    stack.evict(products[1].id)
    stack.evict(products[3].id)
    cached_entry = stack.keys.product(products[0].id).entry
    before = stack.cache.get_versioned(cached_entry)
    # A field no script writes: every rewrite of a versioned entry DELs the hash first, so it survives only untouched.
    stack.cache.client.hset(cached_entry, "untouched", "1")

    report = stack.warm()

    assert [sorted(ids) for ids in stack.database.get_many_calls] == [sorted([products[1].id, products[3].id])]
    assert report.products_warmed == 2
    assert stack.cache.get_versioned(cached_entry) == before
    assert stack.cache.client.hget(cached_entry, "untouched") == b"1"  # never rewritten
    stack.database.get_many_calls.clear()
    assert stack.warm().products_warmed == 0
    assert stack.database.get_many_calls == []  # nothing missing: not one database query


def test_warming_never_overwrites_a_version_written_after_its_database_read(stack: Stack) -> None:
    product = stack.create()
    stack.repo.get_body(product.id)
    stack.evict(product.id)
    # Warming has read v1 and holds the lease; a client write commits and caches v2.
    stack.database.after_get_many = lambda: stack.repo.update(product.id, {"stock": 77}, None)

    report = stack.warm()

    assert report.products_warmed == 0
    cached = stack.cached(product.id)
    assert cached is not None and cached.version == 2 and cached.stock == 77


def test_deleted_products_are_not_cached_by_warming(stack: Stack) -> None:
    product = stack.create()
    stack.repo.get_body(product.id)
    stack.repo.delete(product.id, None)
    stack.evict(product.id)  # the tombstone expired; the id is still popular

    report = stack.warm()

    assert report.products_warmed == 0
    keys = stack.keys.product(product.id)
    assert stack.cache.get_versioned(keys.entry) is None
    assert not stack.cache.client.exists(keys.lease)  # its lease was given back, not left to expire


def test_a_cached_tombstone_is_left_alone(stack: Stack) -> None:
    product = stack.create()
    stack.repo.get_body(product.id)
    stack.repo.delete(product.id, None)

    assert stack.warm().products_warmed == 0
    entry = stack.cache.get_versioned(stack.keys.product(product.id).entry)
    assert entry is not None and entry.is_tombstone


# --- list queries -----------------------------------------------------------------------------------
def test_popular_list_queries_are_warmed_and_the_next_read_is_a_hit() -> None:
    app = job_app(FakeCacheBackend(), popularity_sample_rate=1.0)
    services = services_of(app)
    client = app.test_client()
    for _ in range(3):
        services.products.create(product_values(category="garden"))
    url = "/api/v1/products?category=garden&page_size=2"
    assert client.get(url + "&page=2").status_code == 200  # counted for page 1
    services.products.create(product_values(category="garden"))  # a write: cached lists are gone
    assert services.cache.repository is not None and services.cache.popularity is not None

    report = warm_cache(services.cache.repository, services.cache.popularity, 0, 10)

    assert (report.queries_considered, report.queries_warmed, report.queries_skipped) == (1, 1, 0)
    response = client.get(url)
    assert response.headers["X-Cache"] == "HIT"
    assert json.loads(response.headers["X-Pagination"])["total"] == 4 and len(response.get_json()) == 2
    assert warm_cache(services.cache.repository, services.cache.popularity, 0, 10).queries_warmed == 0  # already cached


def test_malformed_popularity_members_are_skipped_and_the_rest_is_warmed(stack: Stack) -> None:
    product = stack.create()
    stack.evict(product.id)
    stack.cache.incr_scores(stack.keys.popular_products, {"not-an-id": 9, "0123456789ABCDEF01234567": 8, product.id: 1})
    good = query_member(ProductQuery(category="home").normalized())
    bad = [
        "{not json",
        "[1, 2]",  # JSON, but not an object: dropped by the tracker itself
        '{"page": 1, "bogus": true}',
        '{"page": 2, "page_size": 20, "sort": "name"}',
        '{"page": 1, "page_size": 20, "sort": "no_such_field"}',
        '{"page": 1, "page_size": 20, "sort": "name", "q": 5}',
        '{"page": true, "page_size": 20, "sort": "name"}',
        '{"page": 1, "page_size": 0, "sort": "name"}',
    ]
    stack.cache.incr_scores(stack.keys.popular_queries, {good: 1, **{m: 10 + i for i, m in enumerate(bad)}})

    report = stack.warm(top_products=10, top_queries=20)

    assert (report.products_considered, report.products_skipped, report.products_warmed) == (3, 2, 1)
    assert stack.cached(product.id) == product
    assert (report.queries_considered, report.queries_skipped, report.queries_warmed) == (7, 6, 1)


@pytest.mark.parametrize(
    ("raw", "valid"),
    [
        ({"sort": "-price", "page": 1, "page_size": 20}, True),
        (
            {"category": "home", "in_stock": True, "min_price_cents": 100, "sort": "name", "page": 1, "page_size": 5},
            True,
        ),
        ({"category": None, "sort": "name", "page": 1, "page_size": 5}, True),
        ({"sort": None, "page": 1, "page_size": 5}, False),
        ({"sort": "name", "page": 1, "page_size": "5"}, False),
        ({"sort": "name", "page": 1.0, "page_size": 5}, False),
        ({"sort": "name", "page": 1, "page_size": 5, "in_stock": "yes"}, False),
        ({"sort": "name", "page": 1, "page_size": 5, "min_price_cents": False}, False),
    ],
)
def test_query_from_member_accepts_only_well_typed_first_pages(raw: dict[str, Any], valid: bool) -> None:
    query = query_from_member(raw)
    assert (query is not None) is valid
    if query is not None:
        assert query.normalized() == {k: v for k, v in raw.items() if v is not None}


class CountingBackend(FakeCacheBackend):
    """Counts the calls that reach the cache (each is at least one Redis round trip)."""

    def __init__(self) -> None:
        super().__init__()
        self.incr_calls = 0
        self.sent: Counter[str] = Counter()

    def incr_scores(self, key: str, increments: Mapping[str, float]) -> None:
        self.incr_calls += 1
        self.sent.update(increments)
        super().incr_scores(key, increments)


def test_batched_counts_cost_a_read_no_round_trip_and_are_flushed_by_the_process_thread() -> None:
    backend = CountingBackend()
    keys = CacheKeys("pop")
    tracker = PopularityTracker(backend, keys, sample_rate=0.5, rng=random.Random(5), flush_interval_s=0.05)
    other = "b" * 24
    for _ in range(40):
        tracker.product_read(PID)
    tracker.product_read(other)
    tracker.query_read({"category": "home", "sort": "price", "page": 3, "page_size": 20})
    assert backend.incr_calls <= 2  # nothing per read (at most one flush has happened by now)
    deadline = time.monotonic() + 10
    while backend.top_members(keys.popular_products, 0, 5) == [] and time.monotonic() < deadline:
        time.sleep(0.01)  # the daemon thread sends the batch by itself
    replay = random.Random(5)
    sampled = sum(replay.random() < 0.5 for _ in range(40))
    assert tracker.top_products(5)[0] == PID  # top_* sends this process's unsent counts first
    assert backend.sent[PID] == pytest.approx(sampled * 2)
    assert backend.incr_calls <= 4  # one call per sorted set and flush, never one per read


def test_with_no_flush_interval_every_count_is_sent_at_once() -> None:
    backend = CountingBackend()
    tracker = PopularityTracker(backend, CacheKeys("pop"), sample_rate=1.0)
    tracker.product_read(PID)
    tracker.product_read(PID)
    assert backend.incr_calls == 2 and tracker.top_products(1) == [PID]
