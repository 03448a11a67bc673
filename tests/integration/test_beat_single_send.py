"""Two real `celery -A tasks beat` processes on one Redis send each periodic slot once.

No worker runs, so every message beat sent stays in the queue's Redis list. A slot's
claim key lives two intervals, so the test polls for claim keys while the beats run
and collects every slot that was claimed.
"""

from __future__ import annotations

import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import orjson
import pytest
import redis

from jollyjet.cache.keys import CacheKeys
from jollyjet.maintenance import names
from tests.support.jobs import celery_env, celery_process
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.integration
ONLY_THE_AUDIT = {
    "JOLLYJET_AUDIT_INTERVAL_S": "1",
    "JOLLYJET_WARM_ENABLED": "false",
    "JOLLYJET_WARM_ON_WORKER_START": "false",
    "JOLLYJET_CLEANUP_ENABLED": "false",
    "JOLLYJET_REPAIR_ENABLED": "false",
}
SLOTS_WANTED = 3


def claimed_slots(raw: redis.Redis, pattern: str) -> set[int]:
    """Slot numbers of the claim keys present now."""
    return {int(key.rsplit(b":", 1)[1]) for key in raw.scan_iter(match=pattern)}


def ticks(log: Path) -> int:
    """Times a beat was due: it either sent the audit or found its slot claimed."""
    text = log.read_text()
    return text.count("Sending due task cache-audit") + text.count("already sent by another beat")


def queued_tasks(raw: redis.Redis, queue: str) -> list[dict[str, object]]:
    """Headers of the messages waiting in the queue's list."""
    return [orjson.loads(message)["headers"] for message in raw.lrange(queue, 0, -1)]


def test_two_beat_processes_send_each_audit_slot_once(
    redis_server: RedisServer, shared_mongodb_uri: str, tmp_path: Path
) -> None:
    prefix, queue = f"b{uuid.uuid4().hex[:10]}", f"beat-{uuid.uuid4().hex[:10]}"
    raw = redis_server.client()
    claims = f"{CacheKeys(prefix).root}:beat:cache-audit:*"
    env = celery_env(redis_server.url, shared_mongodb_uri, prefix, queue, **ONLY_THE_AUDIT)
    slots: set[int] = set()
    logs = [tmp_path / f"beat-{n}.log" for n in (1, 2)]
    with ExitStack() as beats:
        processes = [
            beats.enter_context(
                celery_process(["beat", "--loglevel=INFO", "-s", str(tmp_path / f"schedule-{n}")], env, log)
            )
            for n, log in enumerate(logs, start=1)
        ]
        # Start-up (imports) takes a second or two; then one slot per second. Both beats
        # must have been due at least once, or there would be no second sender to refuse.
        deadline = time.monotonic() + 15
        while (len(slots) < SLOTS_WANTED or not all(map(ticks, logs))) and time.monotonic() < deadline:
            assert all(p.poll() is None for p in processes), [log.read_text() for log in logs]
            slots |= claimed_slots(raw, claims)
            time.sleep(0.05)
        # A beat claims its slot a moment before it publishes: stop both right after the
        # last publish (the next claim is a second away), not between a claim and its send.
        while raw.llen(queue) < len(slots) and time.monotonic() < deadline:
            time.sleep(0.01)
        for process in processes:
            process.terminate()
    slots |= claimed_slots(raw, claims)  # a claim made just before the beats stopped

    output = [log.read_text() for log in logs]
    sent = queued_tasks(raw, queue)
    assert len(slots) >= SLOTS_WANTED, output
    assert {h["task"] for h in sent} == {names.AUDIT}
    assert len({h["id"] for h in sent}) == len(sent)
    # One message per claimed slot, though both beats were due at every slot.
    assert len(sent) == len(slots), output
    assert all(map(ticks, logs)), output
    assert len(sent) < sum(map(ticks, logs)), output  # without the claims, every tick would send
