"""The Celery worker's pool process SIGKILLed mid-repair and mid-audit: the job runs again and completes.

The Procfile's worker (prefork, one child) and beat; Redis made slow (below the socket
timeout) by the proxy so a run takes seconds, and the child running it is killed. With
`task_acks_late` and `task_reject_on_worker_lost=False` (docs/jobs.md) the killed run
is failed, not requeued; beat's next slot runs the job again. No failed-write record is
lost: records are marked done only after their rewrite.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import requests

from jollyjet import jobs
from jollyjet.cache.keys import SCHEMA_VERSION, CacheKeys
from tests.fault.conftest import TOKEN, FaultStack, running_stack
from tests.support.factories import product_payload
from tests.support.processes import children_of

pytestmark = [pytest.mark.fault, pytest.mark.slow]
PRODUCTS = 60
ROUND_TRIP_DELAY_S = 0.05  # each way: a Redis call takes ~100 ms, under the 2 s socket timeout set below
WAIT_S = 60.0


@pytest.fixture(scope="module")
def worker_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    with running_stack(
        tmp_path_factory.mktemp("worker-killed"),
        JOLLYJET_REDIS_TIMEOUT_MS="2000",
        JOLLYJET_JOBS_OFF="cleanup",  # the audit on (the fault stack's default switches it off)
        JOLLYJET_AUDIT_MODE="full",
        JOLLYJET_AUDIT_INTERVAL_S="2",
        JOLLYJET_REPAIR_INTERVAL_S="2",
        # A killed run's job lock expires with the hard time limit: short, so the rerun comes soon.
        CELERY_TIME_LIMIT_S="15",
        CELERY_RETRY_BACKOFF_MAX_S="2",
        CELERY_VISIBILITY_TIMEOUT_S="60",
    ) as stack:
        yield stack


def wait_for(check: Callable[[], Any], what: str, timeout_s: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"no {what} within {timeout_s} s")


def task_metas(stack: FaultStack, task_name: str) -> dict[str, dict[str, Any]]:
    """Task id -> stored state of every run of this task (the result backend is the broker server)."""
    raw = stack.broker.client()
    metas = [orjson.loads(raw.get(key) or b"{}") for key in raw.scan_iter("celery-task-meta-*")]
    return {m["task_id"]: m for m in metas if m.get("name") == task_name}


def cache_keys(stack: FaultStack) -> CacheKeys:
    """The stack's cache key layout (its prefix is unique per stack)."""
    entries = stack.raw().scan_iter(f"fault*:v{SCHEMA_VERSION}:product:*", count=1000)
    return CacheKeys(next(k.decode().split(":")[0] for k in entries))


def kill_the_run_midway(
    stack: FaultStack,
    task_name: str,
    before: set[str],
    products: list[dict[str, Any]],
    unfinished: Callable[[], bool] = lambda: True,
) -> str:
    """SIGKILL the pool process while a new run of task_name is provably mid-way; its task id.

    Mid-way means observed, not guessed from a sleep: once the run is STARTED every product's
    entry is set back to version 0, and the kill waits until the run has rewritten at least one
    of them (only that run can: the pool has one process). The process is then frozen (SIGSTOP),
    and while it cannot move, the test checks the run has not finished (its state is still
    STARTED, and `unfinished()`, e.g. no record marked done) before SIGKILL. On a loaded machine
    a fixed sleep could land after the run was done; this cannot.
    """
    started = wait_for(
        lambda: [
            tid for tid, m in task_metas(stack, task_name).items() if tid not in before and m["status"] == "STARTED"
        ],
        f"{task_name} run started",
    )
    [run] = started  # one pool process: one run at a time
    raw, keys = stack.raw(), cache_keys(stack)
    entries = [keys.product(p["id"]).entry for p in products]
    for entry in entries:  # direct, not through the slowed proxy: done long before the run's next write
        raw.hset(entry, "v", 0)
    wait_for(lambda: any(raw.hget(entry, "v") == b"1" for entry in entries), f"{task_name} run's first rewrite")
    [child] = children_of(stack.processes["worker"].process.pid)
    os.kill(child, signal.SIGSTOP)
    try:
        state = task_metas(stack, task_name)[run]["status"]
        assert state == "STARTED", f"the run finished before the kill ({state}): not mid-way"
        assert unfinished(), "the run got past its last step before the kill: not mid-way"
    finally:
        os.kill(child, signal.SIGKILL)  # also ends a stopped process
    return str(run)


def create_products(stack: FaultStack) -> list[dict[str, Any]]:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    created = []
    for _ in range(PRODUCTS):
        response = requests.post(f"{stack.url}/api/v1/products", json=product_payload(), headers=auth, timeout=10)
        assert response.status_code == 201, response.text
        created.append(response.json())
    return created


def test_a_repair_killed_midway_is_run_again_and_loses_no_record(worker_stack: FaultStack) -> None:
    stack = worker_stack
    products = create_products(stack)
    before = set(task_metas(stack, jobs.REPAIR))
    stack.proxy.delay(ROUND_TRIP_DELAY_S)
    stack.repairs.insert_many(
        [{"product_id": p["id"], "reason": "planted", "created_at": datetime.now(UTC), "attempts": 0} for p in products]
    )
    # Killed after its first rewrite and before it marked any record done (one update, its last step).
    killed = kill_the_run_midway(stack, jobs.REPAIR, before, products, lambda: stack.pending_repairs() == PRODUCTS)
    stack.proxy.heal()

    wait_for(lambda: stack.pending_repairs() == 0, "replay of every record")
    assert stack.repairs.count_documents({}) == PRODUCTS  # none lost, none duplicated

    def replayed_later() -> list[dict[str, Any]]:
        # The run that marked the records done stores its result a moment after: wait for it.
        metas = task_metas(stack, jobs.REPAIR)
        return [
            m
            for tid, m in metas.items()
            if tid not in before and tid != killed and m["status"] == "SUCCESS" and m["result"].get("records")
        ]

    later = wait_for(replayed_later, "the stored result of the run that replayed the records")
    assert sum(m["result"]["records"] for m in later) == PRODUCTS, later  # every record replayed once, after
    metas = task_metas(stack, jobs.REPAIR)
    assert metas[killed]["status"] == "FAILURE" and "WorkerLostError" in str(metas[killed]["result"]), metas[killed]
    stack.assert_alive()


def test_an_audit_killed_midway_is_run_again_and_repairs_the_drift(worker_stack: FaultStack) -> None:
    stack = worker_stack
    products = create_products(stack)
    raw, keys = stack.raw(), cache_keys(stack)
    before = set(task_metas(stack, jobs.AUDIT))
    stack.proxy.delay(ROUND_TRIP_DELAY_S)
    for product in products:  # drift behind the service's back: every entry claims an older version
        raw.hset(keys.product(product["id"]).entry, "v", 0)
    # Killed after it repaired one entry and before it stored its result.
    killed = kill_the_run_midway(stack, jobs.AUDIT, before, products)
    stack.proxy.heal()

    def repaired() -> bool:
        return all(raw.hget(keys.product(p["id"]).entry, "v") in (b"1", None) for p in products)

    wait_for(repaired, "an audit run that repaired every planted entry")

    def repaired_later() -> list[dict[str, Any]]:
        # The run that repaired the last entry stores its result a moment after: wait for it.
        metas = task_metas(stack, jobs.AUDIT)
        return [
            m
            for tid, m in metas.items()
            if tid not in before and tid != killed and m["status"] == "SUCCESS" and m["result"].get("drift_total", 0)
        ]

    wait_for(repaired_later, "the stored result of a later audit run that found the drift")
    metas = task_metas(stack, jobs.AUDIT)
    assert metas[killed]["status"] == "FAILURE" and "WorkerLostError" in str(metas[killed]["result"]), metas[killed]
    stack.assert_alive()
