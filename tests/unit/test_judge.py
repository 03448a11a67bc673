"""The whole-answer judge (tests/support/judge.py): what it accepts and what it catches."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.judge import DELETE, MAX_STATES, CatalogHistory, CatalogJudge, TooManyStates

RED = {"category": "red", "sort": "price", "page_size": 100}


def body(n: int, version: int = 1, **fields: Any) -> dict[str, Any]:
    """An API body of product n (ids sort as n does)."""
    values: dict[str, Any] = {
        "id": f"{n:024x}",
        "sku": f"SKU-{n}",
        "name": f"Product {n}",
        "description": "",
        "price": f"{10 + n}.00",
        "currency": "USD",
        "category": "red",
        "tags": ["t"],
        "stock": 1,
        "is_active": True,
        "version": version,
        "created_at": f"2024-01-01T00:00:0{n}.000Z",
        "updated_at": f"2024-01-01T00:00:{10 + version}.000Z",
    }
    values.update(fields)
    return values


def moved(n: int, version: int, category: str, price: str) -> dict[str, Any]:
    return body(n, version, category=category, price=price)


@pytest.fixture
def history() -> CatalogHistory:
    return CatalogHistory([body(1), body(2), body(3)], wait_s=0.1)


def test_a_page_from_one_state_passes_and_its_total_is_judged(history: CatalogHistory) -> None:
    judge = CatalogJudge(history)
    assert judge.page(RED, 1.0, 2.0, [body(1), body(2), body(3)], total=3)
    assert not judge.page(RED, 1.0, 2.0, [body(1), body(2), body(3)], total=4)
    assert not judge.page(RED, 1.0, 2.0, [body(2), body(1), body(3)], total=3)  # order is part of the answer
    assert judge.judged == {"page": 3} and judge.mismatched == {"page": 2}


def test_a_page_mixing_two_moments_is_caught(history: CatalogHistory) -> None:
    # Product 2 moves to blue (v2) at [5, 6]. A page read after that must not show it in red
    # with its new body: ids from before the write, the item's body from after it.
    history.record_write(5.0, 6.0, moved(2, 2, "blue", "50.00"))
    judge = CatalogJudge(history)
    mixed = [body(1), moved(2, 2, "blue", "50.00"), body(3)]
    assert not judge.page(RED, 7.0, 8.0, mixed, total=3, x_cache="HIT")
    # Even while the write is in flight (either state is possible), the mix is neither.
    assert not judge.page(RED, 5.5, 5.8, mixed, total=3, x_cache="HIT")
    assert judge.page(RED, 5.5, 5.8, [body(1), body(2), body(3)], total=3)
    assert judge.page(RED, 5.5, 5.8, [body(1), body(3)], total=2)
    assert judge.page(RED, 7.0, 8.0, [body(1), body(3)], total=2)
    assert [m.x_cache for m in judge.mismatches] == ["HIT", "HIT"]
    report = str(judge.mismatches[0])
    assert "not in this state's page" in report and "X-Cache=HIT" in report


def test_a_moved_item_must_take_its_place_in_the_sort_order(history: CatalogHistory) -> None:
    history.record_write(5.0, 6.0, moved(1, 2, "red", "99.00"))
    judge = CatalogJudge(history)
    assert judge.page(RED, 7.0, 8.0, [body(2), body(3), moved(1, 2, "red", "99.00")])
    assert not judge.page(RED, 7.0, 8.0, [moved(1, 2, "red", "99.00"), body(2), body(3)])
    descending = {**RED, "sort": "-price"}
    assert judge.page(descending, 7.0, 8.0, [moved(1, 2, "red", "99.00"), body(3), body(2)])


def test_pages_slice_the_sorted_state(history: CatalogHistory) -> None:
    judge = CatalogJudge(history)
    query = {"category": "red", "sort": "-created_at", "page": 2, "page_size": 2}
    assert judge.page(query, 1.0, 2.0, [body(1)], total=3)
    assert not judge.page(query, 1.0, 2.0, [], total=3)
    assert judge.page({**query, "page": 3}, 1.0, 2.0, [], total=3)


def test_other_filters(history: CatalogHistory) -> None:
    history.record_write(1.0, 2.0, body(2, 2, stock=0, tags=["x"], is_active=False))
    judge = CatalogJudge(history)
    after = body(2, 2, stock=0, tags=["x"], is_active=False)
    assert judge.page({"in_stock": "true", "sort": "price", "page_size": 10}, 3.0, 4.0, [body(1), body(3)])
    assert judge.page({"in_stock": "false", "sort": "price", "page_size": 10}, 3.0, 4.0, [after])
    assert judge.page({"tag": "x", "sort": "price", "page_size": 10}, 3.0, 4.0, [after])
    assert judge.page({"is_active": "false", "sort": "price", "page_size": 10}, 3.0, 4.0, [after])
    prices = {"min_price": "11.00", "max_price": "12", "sort": "price", "page_size": 9}
    assert judge.page(prices, 3.0, 4.0, [body(1), after])
    assert judge.count({"min_price": "12.50"}, 3.0, 4.0, 1)
    assert judge.mismatches == []
    with pytest.raises(ValueError, match="does not know"):
        judge.count({"colour": "red"}, 3.0, 4.0, 1)


def test_a_stale_product_is_caught_and_an_in_flight_one_is_either(history: CatalogHistory) -> None:
    history.record_write(5.0, 6.0, body(1, 2, price="1.00"))
    judge = CatalogJudge(history)
    assert not judge.product(body(1)["id"], 7.0, 8.0, 200, body(1), x_cache="HIT")
    assert judge.product(body(1)["id"], 7.0, 8.0, 200, body(1, 2, price="1.00"))
    assert judge.product(body(1)["id"], 5.5, 8.0, 200, body(1))
    assert judge.product(body(1)["id"], 5.5, 8.0, 200, body(1, 2, price="1.00"))
    # The version alone is not enough: the whole body must be the one that version has.
    assert not judge.product(body(1)["id"], 7.0, 8.0, 200, body(1, 2, price="2.00"))
    assert not judge.product(body(1)["id"], 7.0, 8.0, 404, None)
    assert judge.mismatched == {"product": 3}


def test_deletes_and_creates(history: CatalogHistory) -> None:
    pid = body(1)["id"]
    history.record_write(5.0, 6.0, None, product_id=pid)
    history.record_write(5.0, 6.0, body(4))
    judge = CatalogJudge(history)
    assert judge.product(pid, 7.0, 8.0, 404, None)
    assert not judge.product(pid, 7.0, 8.0, 200, body(1))
    assert judge.product(pid, 4.0, 5.5, 200, body(1))
    assert judge.page(RED, 7.0, 8.0, [body(2), body(3), body(4)], total=3)
    assert not judge.page(RED, 7.0, 8.0, [body(1), body(2), body(3), body(4)], total=4)
    assert judge.count({"category": "red"}, 5.5, 5.6, 2)  # the create applied, the delete not yet
    assert judge.count({"category": "red"}, 5.5, 5.6, 4)
    assert not judge.count({"category": "red"}, 7.0, 8.0, 4)


def test_concurrent_writes_are_accepted_in_either_order(history: CatalogHistory) -> None:
    one, two = (
        history.begin_write(body(1)["id"], {"price": "1.00"}, at=5.0),
        history.begin_write(body(2)["id"], {"category": "blue"}, at=5.1),
    )
    history.complete_write(two, body(2, 2, category="blue"), at=6.0)
    history.complete_write(one, body(1, 2, price="1.00"), at=6.1)
    judge = CatalogJudge(history)
    for page in (
        [body(1), body(2), body(3)],
        [body(1, 2, price="1.00"), body(2), body(3)],
        [body(1), body(3)],
        [body(1, 2, price="1.00"), body(3)],
    ):
        assert judge.page(RED, 5.5, 6.5, page), page
    assert judge.categories(5.5, 6.5, [{"category": "blue", "count": 1}, {"category": "red", "count": 2}])
    assert judge.categories(5.5, 6.5, [{"category": "red", "count": 3}])
    assert not judge.categories(7.0, 8.0, [{"category": "red", "count": 3}])
    assert judge.mismatched == {"categories": 1}


def test_happens_before_orders_optional_writes(history: CatalogHistory) -> None:
    # w1 completed before w2 began: a state with w2 but not w1 never existed.
    history.record_write(5.0, 5.2, body(1, 2, category="blue"))
    history.record_write(5.3, 5.5, body(2, 2, category="blue"))
    judge = CatalogJudge(history)
    assert judge.count({"category": "red"}, 4.0, 6.0, 1)
    assert judge.count({"category": "red"}, 4.0, 6.0, 2)
    assert judge.count({"category": "red"}, 4.0, 6.0, 3)
    assert judge.page(RED, 4.0, 6.0, [body(2), body(3)])
    assert not judge.page(RED, 4.0, 6.0, [body(1), body(3)])


def test_one_products_versions_are_ordered(history: CatalogHistory) -> None:
    # Two overlapping updates of one product: v3's state includes v2's change, never v2 over v3.
    history.record_write(5.0, 6.0, body(1, 3, price="3.00"))
    history.record_write(5.1, 6.1, body(1, 2, price="2.00"))
    judge = CatalogJudge(history)
    pid = body(1)["id"]
    assert judge.product(pid, 6.05, 7.0, 200, body(1, 3, price="3.00"))
    assert not judge.product(pid, 6.05, 7.0, 200, body(1, 2, price="2.00"))  # v3 completed before the read
    assert judge.product(pid, 6.2, 7.0, 200, body(1, 3, price="3.00"))
    assert not judge.product(pid, 6.2, 7.0, 200, body(1, 2, price="2.00"))


def test_a_write_of_unknown_outcome_stays_optional(history: CatalogHistory) -> None:
    pid = body(1)["id"]
    lost = history.begin_write(pid, {"price": "77.00"}, at=5.0)
    history.unknown_write(lost)
    refused = history.begin_write(pid, {"price": "88.00"}, at=5.0)
    history.fail_write(refused)
    judge = CatalogJudge(history)
    # Its version and updated_at are unknown; its change is not.
    landed = body(1, 2, price="77.00", updated_at="2030-01-01T00:00:00.000Z")
    assert judge.product(pid, 100.0, 101.0, 200, landed)
    assert judge.product(pid, 100.0, 101.0, 200, body(1))
    assert not judge.product(pid, 100.0, 101.0, 200, body(1, 2, price="88.00"))
    assert judge.page(RED, 100.0, 101.0, [body(2), body(3), landed])
    assert not judge.page(RED, 4.0, 4.5, [body(2), body(3), landed])  # not before it began
    # A create whose answer never came: a product known by its sku.
    create = history.begin_write(None, {"sku": "NEW-1", "name": "New", "price": "5.00", "category": "red"}, at=9.0)
    history.unknown_write(create)
    new = body(9, sku="NEW-1", name="New", price="5.00", tags=[], stock=0, description="")
    assert judge.page(RED, 100.0, 101.0, [new, body(1), body(2), body(3)], total=4)
    assert judge.count({"category": "red"}, 100.0, 101.0, 4)
    assert judge.mismatched == {"product": 1, "page": 1}


def test_a_pending_write_is_waited_for_then_counted_unknown(history: CatalogHistory) -> None:
    pid = body(1)["id"]
    history.begin_write(pid, {"price": "5.00"}, at=5.0)
    judge = CatalogJudge(history)  # wait_s=0.1: the write never answers
    assert judge.product(pid, 6.0, 7.0, 200, body(1, 2, price="5.00"))
    assert not judge.product(pid, 6.0, 7.0, 200, body(1, 2, price="6.00"))


def test_too_many_states_is_an_error_not_a_pass() -> None:
    history = CatalogHistory([body(n) for n in range(1, 15)], wait_s=0)
    for n in range(1, 15):  # 14 independent writes in flight: 2**14 states
        history.record_write(1.0, 3.0, body(n, 2, price="1.00"))
    assert MAX_STATES < 2**14
    with pytest.raises(TooManyStates):
        CatalogJudge(history).count({"category": "red"}, 2.0, 2.5, 14)


def test_a_delete_change_needs_no_body() -> None:
    history = CatalogHistory([body(1)])
    token = history.begin_write(body(1)["id"], DELETE, at=1.0)
    with pytest.raises(ValueError, match="delete completes with None"):
        history.complete_write(token, body(1, 2), at=2.0)
