"""A stateful property test of the cache layer against a model: it never returns what the model calls stale.

The cached repository exactly as the service wires it (epoch guard, recovery fence,
version guard, leases, generations) on a real redis-server that hypothesis kills and
restarts from old snapshots, evicts keys from, and makes fail writes on; MongoDB is
mongomock. Operations run one at a time, so fresh means exact: every read returns
what the last completed write left (the version, "deleted", each list item and count).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from jollyjet import create_app
from jollyjet.cache.backend import CacheError
from jollyjet.maintenance.repair import repair_failed_writes
from jollyjet.products.domain import ProductQuery
from jollyjet.services import CacheServices, Services, services_of
from tests.conftest import make_settings
from tests.support.factories import product_values
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.integration
CATEGORY = "model"


@contextlib.contextmanager
def failing_writes(cache: CacheServices) -> Iterator[None]:
    """Every cache write fails, as it does when Redis times out after MongoDB committed."""
    backend: Any = cache.backend

    def fail(*_: object, **__: object) -> Any:
        raise CacheError("injected: Redis timed out")

    names = ("set_versioned", "tombstone", "bump_generation")
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
        self.saved = False
        self.context = self.app.app_context()
        self.context.push()

    def teardown(self) -> None:
        self.context.pop()
        self.server.close()

    @property
    def live(self) -> list[str]:
        return sorted(pid for pid, version in self.model.items() if version is not None)

    @initialize()
    def seed(self) -> None:
        for _ in range(3):
            self.create()

    @rule()
    def create(self) -> None:
        record = self.cache.repository.create(product_values(category=CATEGORY))
        self.model[record.id] = record.version

    @precondition(lambda self: self.live)
    @rule(data=st.data(), fail=st.booleans())
    def update(self, data: st.DataObject, fail: bool) -> None:
        product_id = data.draw(st.sampled_from(self.live))
        with failing_writes(self.cache) if fail else contextlib.nullcontext():
            record = self.cache.repository.update(product_id, {"stock": data.draw(st.integers(0, 99))}, None)
        self.model[product_id] = record.version

    @precondition(lambda self: len(self.live) > 1)
    @rule(data=st.data(), fail=st.booleans())
    def delete(self, data: st.DataObject, fail: bool) -> None:
        product_id = data.draw(st.sampled_from(self.live))
        with failing_writes(self.cache) if fail else contextlib.nullcontext():
            self.cache.repository.delete(product_id, None)
        self.model[product_id] = None

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def read(self, data: st.DataObject) -> None:
        product_id = data.draw(st.sampled_from(sorted(self.model)))
        found = self.cache.repository.get(product_id).value
        assert (None if found is None else found.version) == self.model[product_id], "stale product"

    @rule()
    def read_list_and_count(self) -> None:
        query = ProductQuery(category=CATEGORY, page_size=100)
        page = self.cache.repository.list_page(query).value
        assert sorted((r.id, r.version) for r in page.items) == sorted((pid, self.model[pid]) for pid in self.live)
        assert self.cache.repository.count(query).value == len(self.live), "stale count"

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def evict(self, data: st.DataObject) -> None:
        """What maxmemory eviction does: any one key of ours may vanish."""
        keys = sorted(k for batch in self.cache.backend.scan(f"{self.cache.keys.prefix}:*", 500) for k in batch)
        # An index, not a sampled key: which keys exist depends on Redis, and hypothesis must
        # be able to replay the same draws when it shrinks a failure.
        index = data.draw(st.integers(0, 1000))
        if keys:
            self.server.client().delete(keys[index % len(keys)])

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
