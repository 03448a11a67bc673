"""Tools to drive cache races deterministically: pause a thread at a named point."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from jollyjet.products.record import ProductRecord, Read
from jollyjet.products.repository import MongoProductRepository


class Pause:
    """A point where a thread stops until the test releases it."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.release = threading.Event()

    def wait_here(self) -> None:
        """Called by the paused thread."""
        self.reached.set()
        if not self.release.wait(timeout=10):
            raise TimeoutError("test never released the pause")


class SlowReadRepository:
    """Wraps a repository: counts reads, and can pause a get() after it read the database."""

    def __init__(self, inner: MongoProductRepository, delay_s: float = 0.0) -> None:
        self.inner = inner
        self.delay_s = delay_s
        self.pause_after_get: Pause | None = None
        self.reads = 0
        self._lock = threading.Lock()

    def _count(self) -> None:
        with self._lock:
            self.reads += 1
        if self.delay_s:
            time.sleep(self.delay_s)

    def get(self, product_id: str) -> Read[ProductRecord | None]:
        result = self.inner.get(product_id)
        self._count()
        pause, self.pause_after_get = self.pause_after_get, None
        if pause is not None:
            pause.wait_here()
        return result

    def list_page(self, query: Any) -> Any:
        self._count()
        return self.inner.list_page(query)

    def count(self, query: Any) -> Any:
        self._count()
        return self.inner.count(query)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        return getattr(self.inner, name)  # writes and categories pass straight through


def run_in_thread(target: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Start target in a thread; the list receives its result (or exception)."""
    out: list[Any] = []

    def runner() -> None:
        try:
            out.append(target())
        except BaseException as error:
            out.append(error)

    thread = threading.Thread(target=runner, daemon=True)
    thread.start()
    return thread, out
