"""The recovery fence on its own: a manual clock, no poller thread, a stand-in list of pending records."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from jollyjet.cache.fence import IDLE_POLLS, PENDING_CAP, RepairFence, RepairLog

A, B = "0123456789abcdef01234567", "89abcdef0123456789abcdef"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class PendingRecords(RepairLog):
    """The pending product ids a poll would read, settable by the test; counts the queries."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.fail = False
        self.queries = 0

    def pending_product_ids(self, limit: int) -> list[str]:
        self.queries += 1
        if self.fail:
            raise ConnectionError("MongoDB unreachable")
        return self.ids[:limit]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def records() -> PendingRecords:
    return PendingRecords()


@pytest.fixture
def fence(records: PendingRecords, clock: Clock) -> RepairFence:
    return RepairFence(records, poll_s=1.0, clock=clock, background=False)


def test_nothing_pending_allows_every_hit_and_a_fresh_view_costs_no_query(
    fence: RepairFence, records: PendingRecords, clock: Clock
) -> None:
    assert fence.allows_product(A) and fence.allows_results()  # the first use reads once
    assert records.queries == 1
    for _ in range(1000):
        clock.now += 0.001
        assert fence.allows_product(A) and fence.allows_results()
    assert records.queries == 1  # hits within max_age: no query at all


def test_a_pending_record_fences_its_product_and_every_list(
    fence: RepairFence, records: PendingRecords, clock: Clock
) -> None:
    records.ids = [A]
    fence.refresh()
    assert not fence.allows_product(A)
    assert fence.allows_product(B)
    assert not fence.allows_results()
    records.ids = []  # replayed
    clock.now += 0.5
    fence.refresh()
    assert fence.allows_product(A) and fence.allows_results()


def test_a_local_failure_is_fenced_at_once_until_a_later_poll_speaks_for_it(
    fence: RepairFence, records: PendingRecords, clock: Clock
) -> None:
    fence.refresh()
    clock.now += 0.1
    fence.note_failure(A)  # recorded in MongoDB just now; the last poll began before
    assert not fence.allows_product(A) and not fence.allows_results()
    clock.now += 0.1
    records.ids = [A]
    fence.refresh()  # began after the note: it sees the record
    assert not fence.allows_product(A)
    records.ids = []
    clock.now += 0.1
    fence.refresh()
    assert fence.allows_product(A) and fence.allows_results()


def test_a_view_older_than_max_age_allows_no_hit(fence: RepairFence, records: PendingRecords, clock: Clock) -> None:
    fence.refresh()
    records.fail = True
    clock.now += fence.max_age_s + 0.01
    assert not fence.allows_product(A)  # tried to refresh on the spot, could not: MongoDB is unreachable
    assert not fence.allows_results()
    records.fail = False
    assert fence.allows_product(A)  # the next request's refresh works


def test_more_pending_than_the_cap_fences_everything(fence: RepairFence, records: PendingRecords) -> None:
    records.ids = [f"{i:024x}" for i in range(PENDING_CAP + 1)]
    fence.refresh()
    assert not fence.allows_product(A) and not fence.allows_results()


def test_the_commit_wait_is_the_age_at_which_hits_stop(records: PendingRecords) -> None:
    fence = RepairFence(records, poll_s=0.01, background=False)
    assert fence.max_age_s == 0.02
    fence.commit_wait()  # returns (bounded); what it guarantees is in the module docs


def test_the_poller_stops_when_the_fence_is_idle_and_starts_again_when_asked(
    records: PendingRecords, clock: Clock
) -> None:
    fence = RepairFence(records, poll_s=0.01, clock=clock)
    assert fence.allows_product(A)  # starts this process's poller

    def wait_until(check: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 5
        while not check() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert check()

    polled = fence.queries
    wait_until(lambda: fence.queries > polled + 2)  # polling in the background
    clock.now += IDLE_POLLS * fence.poll_s + 1  # nobody asked for a while
    time.sleep(0.05)
    stopped_at = fence.queries
    time.sleep(0.1)
    assert fence.queries <= stopped_at + 1  # at most one poll already under way
    clock.now += 0.001
    assert fence.allows_product(A)  # refreshes at once (its view is old), and polls again
    resumed = fence.queries
    wait_until(lambda: fence.queries > resumed + 2)
