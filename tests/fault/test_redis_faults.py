"""Redis fails under concurrent writers and readers: no stale read, no 5xx, bounded latency.

Each scenario runs the same traffic (2 writers, 6 readers, one client process keeping a
WriteLedger) on the Procfile's processes, injects one failure into the cache server,
heals it, and keeps the traffic going until every failed cache write was replayed and
a few seconds more. Reads are judged during and after the fault: single products and
list items by the ledger, list membership and counts by completed creates and deletes.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.fault.conftest import (
    BREAKER_COOLDOWN_S,
    FENCE_POLL_S,
    POOL_TIMEOUT_MS,
    REDIS_TIMEOUT_MS,
    TOKEN,
    FaultStack,
)
from tests.fault.outcome import Outcome
from tests.support.ledger import WriteLedger
from tests.support.traffic import Traffic

pytestmark = [pytest.mark.fault, pytest.mark.slow]

BEFORE_S = 2.0  # healthy traffic first: the products are cached (hits) when the fault strikes
AFTER_S = 4.0  # traffic after the heal, once nothing is left to replay
REPAIR_TIMEOUT_S = 30.0
# A read makes at most a handful of Redis calls before the breaker opens, each bounded by
# the connect and socket timeouts (one retry), plus a pool wait and MongoDB. Generous for
# a shared two-core machine, and far below anything that would mean "waited on Redis".
READ_LATENCY_BOUND_S = 5 * 2 * (REDIS_TIMEOUT_MS + REDIS_TIMEOUT_MS) / 1000 + POOL_TIMEOUT_MS / 1000 + 2.0


def _wait_for_repairs(stack: FaultStack) -> None:
    deadline = time.monotonic() + REPAIR_TIMEOUT_S
    while stack.pending_repairs() and time.monotonic() < deadline:
        time.sleep(0.2)


def run_scenario(
    stack: FaultStack, name: str, inject: Callable[[], None], heal: Callable[[], None], fault_s: float
) -> Outcome:
    """Traffic, then the fault for fault_s, then heal; traffic until nothing is left to replay."""
    stack.heal()
    ledger = WriteLedger()
    traffic = Traffic(stack.url, TOKEN, f"fault-{name}", ledger)
    traffic.seed(30)
    traffic.start()
    try:
        time.sleep(BEFORE_S)
        started = time.monotonic()
        inject()
        time.sleep(fault_s)
        heal()
        ended = time.monotonic()
        _wait_for_repairs(stack)
        time.sleep(AFTER_S)
    finally:
        report = traffic.stop()
        stack.heal()
    _wait_for_repairs(stack)  # a cache write the after-traffic failed is replayed too (assert_clean checks)
    settings = f"timeouts {REDIS_TIMEOUT_MS} ms, breaker {BREAKER_COOLDOWN_S} s, fence poll {FENCE_POLL_S} s: "
    outcome = Outcome(name, report, ledger, started, ended, settings=settings)
    print(outcome.summary())
    stack.assert_alive()
    return outcome


def assert_clean(outcome: Outcome, stack: FaultStack) -> None:
    """0 stale, every answer one state, 0 5xx, membership and counts right, latency bounded, all repairs replayed."""
    report = outcome.report
    assert outcome.ledger.stale == [], outcome.ledger.stale[:10]
    assert report.membership_violations == [], report.membership_violations[:10]
    assert report.count_violations == [], report.count_violations[:10]
    assert report.judge.mismatches == [] and report.unjudged == [], outcome.whole()
    assert report.read_5xx() == 0 and report.write_5xx == 0
    assert report.p99_read_s() <= READ_LATENCY_BOUND_S, outcome.summary()
    assert stack.pending_repairs() == 0
    assert outcome.ledger.reads_checked > 100 and outcome.ledger.writes_recorded > 30, outcome.summary()


def test_kill(fault_stack: FaultStack) -> None:
    """SIGKILL; the restart loads the last snapshot on disk (whatever it is)."""
    outcome = run_scenario(fault_stack, "kill", fault_stack.cache.kill, fault_stack.cache.start, 3.0)
    assert_clean(outcome, fault_stack)


def test_hang(fault_stack: FaultStack) -> None:
    """SIGSTOP for 4 s: connections stay open, nothing answers; then SIGCONT."""
    outcome = run_scenario(fault_stack, "hang", fault_stack.pause, fault_stack.resume, 4.0)
    assert_clean(outcome, fault_stack)


def test_slow_then_blackholed(fault_stack: FaultStack) -> None:
    """Latency above the socket timeout for 2 s, then nothing delivered for 2 s, then delivered late."""
    proxy = fault_stack.proxy

    def inject() -> None:
        proxy.delay(3 * REDIS_TIMEOUT_MS / 1000)
        time.sleep(2.0)
        proxy.blackhole()

    outcome = run_scenario(fault_stack, "slow", inject, proxy.heal, 2.0)
    assert_clean(outcome, fault_stack)


def test_restart_empty(fault_stack: FaultStack) -> None:
    """Killed, its snapshot gone, restarted with an empty dataset (list generations start over)."""
    cache = fault_stack.cache

    def inject() -> None:
        cache.kill()
        (cache.dir / "dump.rdb").unlink(missing_ok=True)

    outcome = run_scenario(fault_stack, "empty", inject, cache.start, 1.0)
    assert_clean(outcome, fault_stack)


def test_restart_from_an_old_snapshot(fault_stack: FaultStack) -> None:
    """SAVE, 4 s of writes (all written through), kill, restart loading the snapshot."""
    cache = fault_stack.cache

    def inject() -> None:
        assert fault_stack.raw().save()
        time.sleep(4.0)
        cache.kill()

    outcome = run_scenario(fault_stack, "snapshot", inject, cache.start, 0.5)
    assert_clean(outcome, fault_stack)


def test_eviction_under_a_small_maxmemory(fault_stack: FaultStack) -> None:
    """maxmemory just above what is used, volatile-lru (the policy docs/operations.md recommends), and ballast pushing
    over it: entries, leases, tombstones, list results and locks are evicted while the traffic runs."""
    raw = fault_stack.raw()
    evicted_before = int(raw.info("stats")["evicted_keys"])

    def inject() -> None:
        used = int(raw.info("memory")["used_memory"])
        raw.config_set("maxmemory-policy", "volatile-lru")
        raw.config_set("maxmemory", used + 64 * 1024)
        for i in range(64):  # 256 KB of someone else's keys: the server must evict to take writes
            raw.set(f"ballast:{i}", b"x" * 4096, ex=60)

    outcome = run_scenario(fault_stack, "evict", inject, lambda: raw.config_set("maxmemory", 0), 6.0)
    evicted = int(raw.info("stats")["evicted_keys"]) - evicted_before
    print(f"[evict] keys evicted: {evicted}")
    assert evicted > 0, "nothing was evicted: no memory pressure"
    assert_clean(outcome, fault_stack)
