"""The stale-read judge the fault suite and the benchmark rely on."""

from __future__ import annotations

from tests.support.ledger import WriteLedger


def test_read_older_than_a_completed_write_is_stale() -> None:
    ledger = WriteLedger()
    ledger.record_write("p1", 2, completed_at=10.0)
    assert ledger.check_read("p1", began_at=11.0, returned_version=1) is False
    assert ledger.stale_count == 1
    assert ledger.stale[0].newest_completed == 2


def test_read_that_began_before_the_write_completed_may_see_either_version() -> None:
    ledger = WriteLedger()
    ledger.record_write("p1", 2, completed_at=10.0)
    assert ledger.check_read("p1", began_at=9.5, returned_version=1) is True
    assert ledger.check_read("p1", began_at=10.5, returned_version=2) is True
    assert ledger.check_read("p1", began_at=10.5, returned_version=3) is True  # a newer write in flight
    assert ledger.stale_count == 0


def test_out_of_order_recording_keeps_the_newest_version() -> None:
    ledger = WriteLedger()
    ledger.record_write("p1", 3, completed_at=12.0)
    ledger.record_write("p1", 2, completed_at=11.0)
    assert ledger.newest_before("p1", 11.5) == 2
    assert ledger.newest_before("p1", 12.5) == 3
    assert ledger.newest_before("p1", 10.0) is None


def test_product_seen_after_its_delete_completed_is_stale() -> None:
    ledger = WriteLedger()
    ledger.record_write("p1", 1, completed_at=1.0)
    ledger.record_delete("p1", completed_at=2.0)
    assert ledger.check_read("p1", began_at=3.0, returned_version=None) is True
    assert ledger.check_read("p1", began_at=3.0, returned_version=1) is False
    assert ledger.check_items([("p1", 1), ("p2", 5)], began_at=3.0, where="list") == 1
    assert [s.where for s in ledger.stale] == ["product", "list"]


def test_missing_product_after_a_completed_write_is_stale() -> None:
    ledger = WriteLedger()
    ledger.record_write("p1", 1, completed_at=1.0)
    assert ledger.check_read("p1", began_at=2.0, returned_version=None) is False
    assert ledger.reads_checked == 1
