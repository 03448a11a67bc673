"""A stateful property test of the cache layer against a model: it never returns what the model calls stale.

The cached repository exactly as the service wires it (epoch guard, recovery fence,
version guard, leases, generations) on a real redis-server that hypothesis kills and
restarts from old snapshots, evicts keys from, and makes fail writes on; MongoDB is
mongomock. Operations run one at a time, so fresh means exact: every read returns
what the last completed write left (the version, "deleted", each list item and count).
Answers are also judged whole (tests/support/judge.py) against the states the writes
left, which for one-at-a-time operations is the one current state: a product's whole
body, a list page's ids in order with each item's whole body and the total, the count.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from jollyjet import create_app
from jollyjet.cache.store import CacheError
from jollyjet.extensions import CacheServices, Services, services_of
from jollyjet.jobs.repair import repair_failed_writes
from jollyjet.products.record import ProductQuery, ProductRecord, parse, product_to_api
from tests.conftest import make_settings
from tests.support.factories import product_values, record_read
from tests.support.judge import DELETE, CatalogHistory, CatalogJudge
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.integration
CATEGORY = "model"


@contextlib.contextmanager
def failing_writes(cache: CacheServices) -> Iterator[None]:
    """Every cache write fails, as it does when Redis times out after MongoDB committed."""
    backend: Any = cache.backend

    def fail(*_: object, **__: object) -> Any:
        raise CacheError("injected: Redis timed out")

    # Everything a write does in Redis after its commit (its mark, before the commit, succeeded).
    names = ("swap_versioned", "tombstone", "finish_catalog_write")
    for name in names:
        setattr(backend, name, fail)
    try:
        yield
    finally:
        for name in names:
            delattr(backend, name)  # the class's methods again


class CacheModel(RuleBasedStateMachine):
    """Model: product id -> its current version in MongoDB, or None once deleted."""

    def __init__(self) -> None:
        super().__init__()
        self.server = RedisServer(persist=True)
        self.server.start()
        self.app = create_app(
            make_settings(
                redis_url=self.server.url,
                breaker_cooldown_s=0.01,  # a restart opens it; reads should reach Redis again soon
                cache_fence_poll_s=0.05,  # the commit wait of a failed write is twice this
            )
        )
        self.services: Services = services_of(self.app)
        self.cache = self.services.require_cache()
        self.model: dict[str, int | None] = {}
        self.history = CatalogHistory(wait_s=0)  # one operation at a time: nothing is ever in flight
        self.judge = CatalogJudge(self.history)
        self.saved = False
        self.context = self.app.app_context()
        self.context.push()

    def teardown(self) -> None:
        self.context.pop()
        self.server.close()

    def _write(
        self, product_id: str | None, change: dict[str, Any] | str, run: Callable[[], ProductRecord]
    ) -> ProductRecord:
        """Run one write through the cached repository, recorded in the judge's history."""
        token = self.history.begin_write(product_id, change)
        try:
            record = run()
        except BaseException:
            self.history.unknown_write(token)
            raise
        self.history.complete_write(token, None if change == DELETE else product_to_api(record))
        return record

    def _judged(self) -> None:
        assert self.judge.mismatches == [], "\n".join(str(m) for m in self.judge.mismatches)

    @property
    def live(self) -> list[str]:
        return sorted(pid for pid, version in self.model.items() if version is not None)

    @initialize()
    def seed(self) -> None:
        for _ in range(3):
            self.create()

    @rule()
    def create(self) -> None:
        values = product_values(category=CATEGORY)
        record = self._write(None, values, lambda: self.cache.repository.create(values))
        self.model[record.id] = record.version

    @precondition(lambda self: self.live)
    @rule(data=st.data(), fail=st.booleans())
    def update(self, data: st.DataObject, fail: bool) -> None:
        product_id = data.draw(st.sampled_from(self.live))
        change = {"stock": data.draw(st.integers(0, 99))}
        with failing_writes(self.cache) if fail else contextlib.nullcontext():
            record = self._write(product_id, change, lambda: self.cache.repository.update(product_id, change, None))
        self.model[product_id] = record.version

    @precondition(lambda self: len(self.live) > 1)
    @rule(data=st.data(), fail=st.booleans())
    def delete(self, data: st.DataObject, fail: bool) -> None:
        product_id = data.draw(st.sampled_from(self.live))
        with failing_writes(self.cache) if fail else contextlib.nullcontext():
            self._write(product_id, DELETE, lambda: self.cache.repository.delete(product_id, None))
        self.model[product_id] = None

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def read(self, data: st.DataObject) -> None:
        product_id = data.draw(st.sampled_from(sorted(self.model)))
        began = time.monotonic()
        read = record_read(self.cache.repository.get_body(product_id))
        ended, found = time.monotonic(), read.value
        assert (None if found is None else found.version) == self.model[product_id], "stale product"
        answer = None if found is None else product_to_api(found)
        self.judge.product(product_id, began, ended, 404 if answer is None else 200, answer, read.source.value)
        self._judged()

    @rule()
    def read_list_and_count(self) -> None:
        query = ProductQuery(category=CATEGORY, page_size=100)
        began = time.monotonic()
        listed = self.cache.repository.list_bodies(query)
        ended, page = time.monotonic(), listed.value
        records = [parse(body) for body in page.bodies]
        assert sorted((r.id, r.version) for r in records) == sorted((pid, self.model[pid]) for pid in self.live)
        # Whole: the ids in the service's order (-created_at, then -id), each item's body, the total.
        items = [product_to_api(r) for r in records]
        self.judge.page({"category": CATEGORY, "page_size": 100}, began, ended, items, page.total, listed.source.value)
        began = time.monotonic()
        counted = self.cache.repository.count(query)
        ended, count = time.monotonic(), counted.value
        assert count == len(self.live), "stale count"
        self.judge.count({"category": CATEGORY}, began, ended, count, counted.source.value)
        self._judged()

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def evict(self, data: st.DataObject) -> None:
        """What maxmemory eviction does: any one key of ours may vanish."""
        # Through the server, not the service's client: that one refuses calls while a restarted
        # server waits out the old one (a new cache epoch), and eviction does not ask.
        raw = self.server.client()
        keys = sorted(k.decode() for k in raw.scan_iter(match=f"{self.cache.keys.prefix}:*", count=500))
        # An index, not a sampled key: which keys exist depends on Redis, and hypothesis must
        # be able to replay the same draws when it shrinks a failure.
        index = data.draw(st.integers(0, 1000))
        if keys:
            raw.delete(keys[index % len(keys)])

    @rule()
    def snapshot(self) -> None:
        assert self.server.client().save()
        self.saved = True

    @precondition(lambda self: self.saved)
    @rule()
    def restart_from_snapshot(self) -> None:
        self.server.kill()
        self.server.start()

    @rule()
    def replay(self) -> None:
        """The repair job's run, then the fence's next poll."""
        with contextlib.suppress(CacheError):  # Redis may be refusing right after a restart: records stay
            repair_failed_writes(
                self.cache.repairs, self.cache.backend, self.cache.writer, self.services.mongo, 100, lease_ttl_ms=2000
            )
        if self.cache.repository.fence is not None:
            self.cache.repository.fence.refresh()


CacheModel.TestCase.settings = settings(
    max_examples=20, stateful_step_count=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestCacheModel = pytest.mark.slow(CacheModel.TestCase)
