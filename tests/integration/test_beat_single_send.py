"""Two real `celery -A tasks beat` processes on one Redis send each periodic slot once.

No worker runs, so every message beat sent stays in the queue's Redis list. Every slot
claim is seen as a keyspace notification (a claim key lives only two intervals, so
sampling the keys could miss one on a loaded machine). The beats are stopped while
frozen, at a moment checked to have no claimed slot still waiting for its send.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import orjson
import pytest
import redis
from redis.client import PubSub

from jollyjet import jobs
from jollyjet.cache.keys import CacheKeys
from tests.support.jobs import celery_env, celery_process
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.integration
ONLY_THE_AUDIT = {
    "JOLLYJET_AUDIT_INTERVAL_S": "1",
    "JOLLYJET_JOBS_OFF": "warm,cleanup,repair",
}
SLOTS_WANTED = 3
# Bounds, not expectations: start-up (imports) takes seconds, much longer on a loaded machine.
WAIT_S = 90.0


@pytest.fixture
def notifying_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own that publishes string-command keyspace events."""
    server = RedisServer()
    server.start("--notify-keyspace-events", "K$")
    yield server
    server.close()


def new_claims(claims: PubSub) -> set[int]:
    """Slot numbers claimed since the last call: every notification up to a PING's answer."""
    slots: set[int] = set()
    claims.ping()
    while True:
        message = claims.get_message(timeout=WAIT_S)
        assert message is not None, "no answer to PING on the notification connection"
        if message["type"] == "pong":
            return slots
        if message["type"] == "pmessage" and message["data"] == b"set":
            slots.add(int(message["channel"].rsplit(b":", 1)[1]))


def signal_all(processes: list[subprocess.Popen[bytes]], signum: int) -> None:
    """Send signum to every process."""
    for process in processes:
        os.kill(process.pid, signum)


def ticks(log: Path) -> int:
    """Times a beat was due: it either sent the audit or found its slot claimed."""
    text = log.read_text()
    return text.count("Sending due task cache-audit") + text.count("already sent by another beat")


def queued_tasks(raw: redis.Redis, queue: str) -> list[dict[str, object]]:
    """Headers of the messages waiting in the queue's list."""
    return [orjson.loads(message)["headers"] for message in raw.lrange(queue, 0, -1)]


def test_two_beat_processes_send_each_audit_slot_once(
    notifying_redis: RedisServer, shared_mongodb_uri: str, tmp_path: Path
) -> None:
    prefix, queue = f"b{uuid.uuid4().hex[:10]}", f"beat-{uuid.uuid4().hex[:10]}"
    raw = notifying_redis.client()
    claims = raw.pubsub()
    claims.psubscribe(f"__keyspace@0__:{CacheKeys(prefix).root}:beat:cache-audit:*")
    env = celery_env(notifying_redis.url, shared_mongodb_uri, prefix, queue, **ONLY_THE_AUDIT)
    slots: set[int] = set()
    logs = [tmp_path / f"beat-{n}.log" for n in (1, 2)]
    with ExitStack() as beats:
        beats.callback(claims.close)
        processes = [
            beats.enter_context(
                celery_process(["beat", "--loglevel=INFO", "-s", str(tmp_path / f"schedule-{n}")], env, log)
            )
            for n, log in enumerate(logs, start=1)
        ]
        # Then one slot per second. Both beats must have been due at least once, or there
        # would be no second sender to refuse.
        deadline = time.monotonic() + WAIT_S
        while len(slots) < SLOTS_WANTED or not all(map(ticks, logs)):
            assert time.monotonic() < deadline, ("too few slots or ticks", slots, [log.read_text() for log in logs])
            assert all(p.poll() is None for p in processes), [log.read_text() for log in logs]
            slots |= new_claims(claims)
            time.sleep(0.1)
        # A beat claims its slot a moment before it publishes. Freeze both, and stop them only
        # if no claimed slot is still waiting for its send; else let them run on a moment.
        while True:
            signal_all(processes, signal.SIGSTOP)
            slots |= new_claims(claims)
            if raw.llen(queue) >= len(slots):
                signal_all(processes, signal.SIGKILL)  # frozen: nothing is claimed or sent after the check
                break
            signal_all(processes, signal.SIGCONT)
            assert time.monotonic() < deadline, ("a claimed slot was never sent", slots, raw.llen(queue))
            time.sleep(0.01)

    output = [log.read_text() for log in logs]
    sent = queued_tasks(raw, queue)
    assert len(slots) >= SLOTS_WANTED, output
    assert {h["task"] for h in sent} == {jobs.AUDIT}
    assert len({h["id"] for h in sent}) == len(sent)
    # One message per claimed slot, though both beats were due at every slot.
    assert len(sent) == len(slots), output
    assert all(map(ticks, logs)), output
    assert len(sent) < sum(map(ticks, logs)), output  # without the claims, every tick would send
