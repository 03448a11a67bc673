"""MongoProductRepository and the repair log against a MongoDB wire-protocol server.

By default the server is nx-27017 0.8.1 (tests/support/mongo_server.py); with
MONGODB_URI=mongodb://... the same tests run against a real MongoDB.

nx-27017 differs from MongoDB in ways our code now avoids, and these tests keep it so:
a datetime given to $set is stored as a string (the repository uses $currentDate),
equality on an indexed array field misses elements in find (tag filters use $in),
and count_documents({"f": None}) skips documents holding null (the repair log uses
{"$in": [None]}). One gap remains, shown by a strict xfail on nx-27017 only:
findAndModify that hits a unique-index violation answers {ok: 1, value: null}
instead of error 11000, so there an update to a taken sku looks like a version conflict.
"""

from __future__ import annotations

import multiprocessing
import queue
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import mongoengine
import pytest

from jollyjet.cache.fence import CacheRepairRecord, RepairLog
from jollyjet.commands import ensure_indexes
from jollyjet.db import connect_mongo
from jollyjet.products.record import SORT_FIELDS, CategoryCount, ProductQuery, ProductRecord
from jollyjet.products.repository import (
    DatabaseUnavailable,
    DuplicateSku,
    MongoProductRepository,
    ProductNotFound,
    VersionConflict,
)
from jollyjet.settings import load_settings
from tests.support.mongo_server import (
    MongoForTests,
    MongoWireServer,
    external_mongo_uri,
    mongo_for_tests,
    unique_database_name,
)

pytestmark = pytest.mark.integration

ON_NX = external_mongo_uri() is None


def nx_gap(reason: str, raises: type[BaseException] = AssertionError) -> pytest.MarkDecorator:
    """Expected to fail on nx-27017 only, with exactly this exception (see the module docstring)."""
    return pytest.mark.xfail(ON_NX, strict=True, raises=raises, reason=f"nx-27017 0.8.1: {reason}")


NX_FIND_AND_MODIFY_DUPLICATE = nx_gap("findAndModify answers value=null on a duplicate key", raises=VersionConflict)
MISSING_ID = "0123456789abcdef01234567"


def connect(uri: str, timeout_ms: int = 2000) -> None:
    """Bind mongoengine the way the app does (jollyjet.db.connect_mongo)."""
    connect_mongo(load_settings(env="testing", mongodb_uri=uri, api_tokens_raw="x" * 20, mongodb_timeout_ms=timeout_ms))


@pytest.fixture(scope="module")
def mongo() -> Iterator[MongoForTests]:
    """nx-27017 on a free port (or the real MongoDB in MONGODB_URI) for this module."""
    server = mongo_for_tests()
    server.start()
    yield server
    server.close()


@pytest.fixture
def database(mongo: MongoForTests) -> Iterator[str]:
    """A fresh database bound as mongoengine's default connection, with its indexes; dropped afterwards."""
    name = unique_database_name()
    connect(mongo.uri_for(name))
    ensure_indexes()  # what `flask --app app ensure-indexes` creates: the unique sku index among them
    yield name
    mongoengine.disconnect()
    mongo.drop_database(name)


@pytest.fixture
def repo(database: str) -> MongoProductRepository:
    return MongoProductRepository()


def product(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "sku": "SKU-1",
        "name": "Desk lamp",
        "description": "Bright.",
        "price_cents": 1999,
        "currency": "USD",
        "category": "lamps",
        "tags": ["red", "desk"],
        "stock": 3,
        "is_active": True,
    }
    values.update(overrides)
    return values


# Names carry regex metacharacters so an unescaped q would match the wrong products.
CATALOG = [
    product(sku="LAMP-1", name="Desk Lamp (x.y)", price_cents=1999, category="lamps", tags=["red", "desk"], stock=3),
    product(sku="LAMP-2", name="floor lamp", price_cents=4999, category="lamps", tags=["blue"], stock=0),
    product(sku="CHAIR-1", name="Arm Chair", price_cents=4999, category="chairs", tags=["red"], is_active=False),
    product(sku="CHAIR-2", name="a+b stool", price_cents=999, category="chairs", tags=[], stock=0),
    product(sku="RUG-1", name="LAMPSHADE rug", price_cents=12000, category="rugs", tags=["desk", "red"], stock=1),
]
ALL_SKUS = {p["sku"] for p in CATALOG}


@pytest.fixture
def catalog(repo: MongoProductRepository) -> list[ProductRecord]:
    return [repo.create(values) for values in CATALOG]


def skus(records: list[ProductRecord]) -> set[str]:
    return {r.sku for r in records}


# --- create / get ---------------------------------------------------------------------------


def test_create_then_get_round_trips_every_field(repo: MongoProductRepository) -> None:
    created = repo.create(product())
    assert created.version == 1
    assert created.created_at == created.updated_at
    assert created.created_at.tzinfo is not None and created.created_at.utcoffset() == timedelta(0)
    assert created.created_at.microsecond % 1000 == 0  # what MongoDB stores: milliseconds
    read = repo.get(created.id).value
    assert read == created
    assert read.tags == ("red", "desk")


def test_get_unknown_or_malformed_id_is_none(repo: MongoProductRepository) -> None:
    assert repo.get(MISSING_ID).value is None
    assert repo.get("not-an-id").value is None


def test_duplicate_sku_on_create(repo: MongoProductRepository) -> None:
    repo.create(product(sku="DUP"))
    with pytest.raises(DuplicateSku):
        repo.create(product(sku="DUP", name="Other"))
    assert repo.count(ProductQuery()).value == 1


# --- update ---------------------------------------------------------------------------------


def test_update_without_expected_version_increments(repo: MongoProductRepository) -> None:
    created = repo.create(product())
    updated = repo.update(created.id, {"stock": 9, "name": "Renamed", "tags": ["blue"]}, None)
    assert (updated.version, updated.stock, updated.name, updated.tags) == (2, 9, "Renamed", ("blue",))
    assert updated.created_at == created.created_at
    assert updated.updated_at >= created.updated_at
    assert repo.get(created.id).value == updated


def test_update_with_expected_version(repo: MongoProductRepository) -> None:
    created = repo.create(product())
    assert repo.update(created.id, {"stock": 1}, expected_version=1).version == 2
    with pytest.raises(VersionConflict) as conflict:
        repo.update(created.id, {"stock": 2}, expected_version=1)
    assert conflict.value.current_version == 2
    assert repo.get(created.id).value.stock == 1  # the stale write changed nothing


def test_update_unknown_or_malformed_id(repo: MongoProductRepository) -> None:
    repo.create(product())
    for product_id in (MISSING_ID, "nope"):
        with pytest.raises(ProductNotFound):
            repo.update(product_id, {"stock": 1}, None)
        with pytest.raises(ProductNotFound):
            repo.update(product_id, {"stock": 1}, expected_version=1)


@NX_FIND_AND_MODIFY_DUPLICATE
def test_update_to_a_taken_sku_is_duplicate(repo: MongoProductRepository) -> None:
    repo.create(product(sku="TAKEN"))
    other = repo.create(product(sku="FREE"))
    with pytest.raises(DuplicateSku):
        repo.update(other.id, {"sku": "TAKEN"}, expected_version=1)
    assert repo.get(other.id).value.sku == "FREE"


def test_update_stores_updated_at_as_a_date(repo: MongoProductRepository, mongo: MongoForTests, database: str) -> None:
    created = repo.create(product())
    repo.update(created.id, {"stock": 0}, None)
    with mongo.client() as client:
        raw = client[database]["products"].find_one({"sku": created.sku})
    assert isinstance(raw["created_at"], datetime)
    assert isinstance(raw["updated_at"], datetime), f"updated_at stored as {raw['updated_at']!r}"


def test_sort_by_updated_at_sees_updates(repo: MongoProductRepository) -> None:
    first = repo.create(product(sku="FIRST"))
    repo.create(product(sku="SECOND"))
    repo.update(first.id, {"stock": 0}, None)  # now the most recently updated
    items = repo.list_page(ProductQuery(sort="updated_at")).value.items
    assert [r.sku for r in items] == ["SECOND", "FIRST"]


# --- delete ---------------------------------------------------------------------------------


def test_delete_with_and_without_expected_version(repo: MongoProductRepository) -> None:
    kept = repo.create(product(sku="A"))
    gone = repo.create(product(sku="B"))
    with pytest.raises(VersionConflict) as conflict:
        repo.delete(gone.id, expected_version=7)
    assert conflict.value.current_version == 1
    assert repo.delete(gone.id, expected_version=1) == gone  # the last state
    assert repo.get(gone.id).value is None
    with pytest.raises(ProductNotFound):
        repo.delete(gone.id, None)
    with pytest.raises(ProductNotFound):
        repo.delete("nope", None)
    assert repo.delete(kept.id, None).sku == "A"
    assert repo.count(ProductQuery()).value == 0


# --- list, count, categories ----------------------------------------------------------------

FILTER_CASES = [
    pytest.param({}, ALL_SKUS, id="no-filter"),
    pytest.param({"category": "lamps"}, {"LAMP-1", "LAMP-2"}, id="category"),
    pytest.param({"category": "nothing"}, set(), id="category-none"),
    pytest.param({"tag": "red"}, {"LAMP-1", "CHAIR-1", "RUG-1"}, id="tag"),
    pytest.param({"tag": "desk"}, {"LAMP-1", "RUG-1"}, id="tag-2"),
    pytest.param({"min_price_cents": 4999}, {"LAMP-2", "CHAIR-1", "RUG-1"}, id="min-price"),
    pytest.param({"max_price_cents": 1999}, {"LAMP-1", "CHAIR-2"}, id="max-price"),
    pytest.param({"min_price_cents": 1999, "max_price_cents": 4999}, {"LAMP-1", "LAMP-2", "CHAIR-1"}, id="price-range"),
    pytest.param({"in_stock": True}, {"LAMP-1", "CHAIR-1", "RUG-1"}, id="in-stock"),
    pytest.param({"in_stock": False}, {"LAMP-2", "CHAIR-2"}, id="out-of-stock"),
    pytest.param({"is_active": False}, {"CHAIR-1"}, id="inactive"),
    pytest.param({"is_active": True}, ALL_SKUS - {"CHAIR-1"}, id="active"),
    pytest.param({"q": "lamp"}, {"LAMP-1", "LAMP-2", "RUG-1"}, id="q-case-insensitive"),
    pytest.param({"q": "(x.y)"}, {"LAMP-1"}, id="q-parens-escaped"),
    pytest.param({"q": "a+b"}, {"CHAIR-2"}, id="q-plus-escaped"),
    pytest.param({"q": "."}, {"LAMP-1"}, id="q-dot-escaped"),
    pytest.param({"q": "p (x"}, {"LAMP-1"}, id="q-space"),
    pytest.param(
        {"category": "lamps", "q": "LAMP", "min_price_cents": 2000, "in_stock": False, "is_active": True},
        {"LAMP-2"},
        id="combined",
    ),
]


@pytest.mark.parametrize(("filters", "expected"), FILTER_CASES)
def test_filters(
    repo: MongoProductRepository, catalog: list[ProductRecord], filters: dict[str, Any], expected: set[str]
) -> None:
    query = ProductQuery(**filters)
    page = repo.list_page(query).value
    assert repo.count(query).value == len(expected)
    assert page.total == len(expected)
    assert skus(page.items) == expected


SORT_ATTRIBUTES = {"price": "price_cents"}


@pytest.mark.parametrize("direction", ["", "-"])
@pytest.mark.parametrize("field", SORT_FIELDS)
def test_sort(repo: MongoProductRepository, catalog: list[ProductRecord], field: str, direction: str) -> None:
    attribute = SORT_ATTRIBUTES.get(field, field)
    # _id breaks ties in the same direction (two products cost 49.99; several share a stock level).
    expected = sorted(catalog, key=lambda r: (getattr(r, attribute), r.id), reverse=direction == "-")
    items = repo.list_page(ProductQuery(sort=f"{direction}{field}")).value.items
    assert [r.sku for r in items] == [r.sku for r in expected]


def test_pages_cover_the_sorted_list_once(repo: MongoProductRepository, catalog: list[ProductRecord]) -> None:
    expected = [r.sku for r in sorted(catalog, key=lambda r: (r.price_cents, r.id), reverse=True)]
    seen: list[str] = []
    for page_number in (1, 2, 3):
        page = repo.list_page(ProductQuery(sort="-price", page=page_number, page_size=2)).value
        assert page.total == len(catalog)
        seen.extend(r.sku for r in page.items)
    assert seen == expected
    beyond = repo.list_page(ProductQuery(sort="-price", page=4, page_size=2)).value
    assert beyond.items == [] and beyond.total == len(catalog)


def test_filtered_pages(repo: MongoProductRepository, catalog: list[ProductRecord]) -> None:
    query = ProductQuery(is_active=True, sort="name", page=2, page_size=3)
    page = repo.list_page(query).value
    active = sorted((r for r in catalog if r.is_active), key=lambda r: (r.name, r.id))
    assert page.total == 4
    assert [r.sku for r in page.items] == [r.sku for r in active[3:]]


def test_categories(repo: MongoProductRepository, catalog: list[ProductRecord]) -> None:
    assert repo.categories().value == [
        CategoryCount("chairs", 2),
        CategoryCount("lamps", 2),
        CategoryCount("rugs", 1),
    ]


def test_categories_of_an_empty_catalog(repo: MongoProductRepository) -> None:
    assert repo.categories().value == []


# --- repair log -----------------------------------------------------------------------------


def test_repair_log_records_and_lists_oldest_pending_first(database: str) -> None:
    log = RepairLog()
    log.record("p-truncated", "x" * 300)
    [recorded] = log.pending(10)
    assert recorded.product_id == "p-truncated" and len(recorded.reason) == 200

    start = datetime(2030, 1, 1, tzinfo=UTC)
    for product_id, offset in (("p-late", 2), ("p-early", 0), ("p-middle", 1)):
        CacheRepairRecord(product_id=product_id, reason="r", created_at=start + timedelta(seconds=offset)).save()
    oldest = log.pending(3)
    assert [r.product_id for r in oldest] == ["p-truncated", "p-early", "p-middle"]
    assert oldest[1].created_at == start and oldest[1].attempts == 0 and oldest[1].done_at is None

    log.mark_attempted([oldest[1].id])
    assert log.mark_done([oldest[1].id]) == 1
    assert [r.product_id for r in log.pending(10)] == ["p-truncated", "p-middle", "p-late"]
    assert CacheRepairRecord.objects(id=oldest[1].id).first().attempts == 1
    assert log.mark_done([]) == 0


def test_repair_log_pending_count(database: str) -> None:
    log = RepairLog()
    for product_id in ("a", "b", "c"):
        log.record(product_id, "redis down")
    log.mark_done([r.id for r in log.pending(10) if r.product_id == "b"])
    assert log.pending_count() == 2


def test_repair_log_mark_done_stores_a_date(database: str, mongo: MongoForTests) -> None:
    log = RepairLog()
    log.record("a", "redis down")
    log.mark_done([r.id for r in log.pending(10)])
    with mongo.client() as client:
        raw = client[database]["cache_repairs"].find_one({"product_id": "a"})
    assert isinstance(raw["done_at"], datetime), f"done_at stored as {raw['done_at']!r}"


def test_repair_log_purges_only_old_done_records(database: str) -> None:
    log = RepairLog()
    now = datetime.now(UTC)
    for product_id, done_at in (("old-done", now - timedelta(days=2)), ("recent-done", now), ("pending", None)):
        CacheRepairRecord(product_id=product_id, reason="r", created_at=now - timedelta(days=3), done_at=done_at).save()
    assert log.purge_done(older_than=timedelta(days=1)) == 1
    assert sorted(r.product_id for r in CacheRepairRecord.objects) == ["pending", "recent-done"]


# --- outage ---------------------------------------------------------------------------------


@pytest.mark.skipif(not ON_NX, reason="stops and restarts the server: only with a private nx-27017")
def test_outage_is_database_unavailable_and_a_restart_keeps_the_data() -> None:
    server = MongoWireServer()
    try:
        server.start()
        connect(server.uri, timeout_ms=200)
        repo = MongoProductRepository()
        created = repo.create(product())
        server.stop()
        with pytest.raises(DatabaseUnavailable):
            repo.get(created.id)
        with pytest.raises(DatabaseUnavailable):
            repo.update(created.id, {"stock": 0}, None)
        RepairLog().record(created.id, "mongo down too")  # logged, never raised
        server.start()
        assert repo.get(created.id).value == created
    finally:
        mongoengine.disconnect()
        server.close()


# --- several processes ----------------------------------------------------------------------

WORKERS = 2
UPDATES_PER_WORKER = 50


def bump_versions(uri: str, product_id: str, conditional: bool, start: Any, results: Any) -> None:
    """Child process: commit UPDATES_PER_WORKER updates, retrying conditional ones on conflict."""
    try:
        connect(uri)
        repo = MongoProductRepository()
        committed: list[int] = []
        conflicts = 0
        start.wait(timeout=30)
        while len(committed) < UPDATES_PER_WORKER:
            expected = repo.get(product_id).value.version if conditional else None
            try:
                record = repo.update(product_id, {"stock": len(committed)}, expected)
            except VersionConflict:
                conflicts += 1
                continue
            committed.append(record.version)
        results.put(("ok", committed, conflicts))
    except BaseException as error:
        results.put(("error", repr(error), 0))
        raise


@pytest.mark.parametrize("conditional", [True, False], ids=["expected-version", "unconditional"])
def test_concurrent_updates_from_two_processes_lose_nothing(
    repo: MongoProductRepository, mongo: MongoForTests, database: str, conditional: bool
) -> None:
    created = repo.create(product())
    context = multiprocessing.get_context("spawn")  # no pymongo client crosses a fork
    start = context.Barrier(WORKERS)
    results = context.Queue()
    args = (mongo.uri_for(database), created.id, conditional, start, results)
    workers = [context.Process(target=bump_versions, args=args) for _ in range(WORKERS)]
    try:
        for worker in workers:
            worker.start()
        outcomes = []
        for _ in workers:
            try:
                outcomes.append(results.get(timeout=90))
            except queue.Empty:
                pytest.fail("a worker process neither finished nor reported an error")
        for worker in workers:
            worker.join(timeout=10)
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
                worker.join()
    assert [o[0] for o in outcomes] == ["ok"] * WORKERS, outcomes
    committed = sorted(v for _, versions, _ in outcomes for v in versions)
    # Every committed update got its own version: none was lost or applied twice.
    assert committed == list(range(2, 2 + WORKERS * UPDATES_PER_WORKER))
    assert repo.get(created.id).value.version == 1 + WORKERS * UPDATES_PER_WORKER
