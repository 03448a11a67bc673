"""Publishing a job from a request, bounded in time whatever state the broker is in.

Celery's own timeouts do not bound a publish: with a Redis that accepts connections
but does not answer, `send_task` spends about 20 s in the result backend's reconnect
retries (subscribing to the task's result channel) before it raises, and it raises a
bare RuntimeError. So the publish runs in a short-lived thread and the request waits
at most JOB_PUBLISH_TIMEOUT_S for it. A publish that outlives the wait may
still land later; every job is idempotent and locked, so a late copy costs one
skipped run. At most MAX_IN_FLIGHT publishes wait on the broker at a time: once they
are stuck, further requests get the 503 at once instead of piling up threads.
"""

from __future__ import annotations

import queue
import threading

from celery import Celery
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

# Broker or result-backend failures: the job system is unreachable, not the request wrong.
QUEUE_ERRORS = (KombuError, RedisError, OSError)
MAX_IN_FLIGHT = 2


class QueueUnavailable(Exception):
    """The broker (or the result backend) did not take the job in time."""


def _caused_by_queue_error(error: BaseException) -> bool:
    """True if a queue error is anywhere in the exception's cause chain."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, QUEUE_ERRORS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class JobPublisher:
    """Sends tasks by name; raises QueueUnavailable instead of waiting on a dead broker."""

    def __init__(self, celery: Celery, timeout_s: float) -> None:
        self._celery = celery
        self._timeout_s = timeout_s
        self._slots = threading.BoundedSemaphore(MAX_IN_FLIGHT)
        self._lock = threading.Lock()
        self.in_flight = 0

    def publish(self, task_name: str) -> str:
        """Enqueue the task; its id, or QueueUnavailable within the timeout."""
        if not self._slots.acquire(blocking=False):
            raise QueueUnavailable("earlier jobs are still waiting for the broker")
        outcome: queue.Queue[tuple[str | None, BaseException | None]] = queue.Queue(maxsize=1)
        self._count(+1)
        threading.Thread(target=self._send, args=(task_name, outcome), name="job-publish", daemon=True).start()
        try:
            task_id, error = outcome.get(timeout=self._timeout_s)
        except queue.Empty:
            raise QueueUnavailable(f"the broker did not take the job within {self._timeout_s:g} s") from None
        if error is not None:
            if _caused_by_queue_error(error):
                raise QueueUnavailable(f"the broker is unreachable ({type(error).__name__})") from error
            raise error
        assert task_id is not None
        return task_id

    def _send(self, task_name: str, outcome: queue.Queue[tuple[str | None, BaseException | None]]) -> None:
        try:
            outcome.put((self._celery.send_task(task_name).id, None))
        except Exception as error:
            outcome.put((None, error))
        finally:
            self._count(-1)
            self._slots.release()

    def _count(self, step: int) -> None:
        with self._lock:
            self.in_flight += step
