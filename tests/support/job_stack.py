"""Helpers for the background-job tests: backends to run them on, and ways to plant cache states.

The planting helpers write what the service itself never writes (keys without a TTL,
raw entries), so they reach past the CacheBackend interface to the raw redis client
under a CacheBackend (fakeredis in the unit tests).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask

from jollyjet.cache.store import CacheBackend, CacheError
from jollyjet.extensions import Services
from jollyjet.products.record import ProductRecord, render
from tests.conftest import make_app, make_settings
from tests.support.factories import product_values as product_values  # re-exported for the job tests
from tests.support.fake_cache import FakeCacheBackend, write_entry


def job_app(backend: CacheBackend, **overrides: Any) -> Flask:
    """The app on its own mongomock database and key prefix, with this cache backend."""
    return make_app(make_settings(**overrides), cache_backend=backend)


def plant_record(services: Services, record: ProductRecord, ttl_s: int = 600) -> None:
    """Cache record's bytes at record.version, as if some writer had put them there."""
    assert services.cache is not None
    keys = services.cache.keys.product(record.id)
    assert write_entry(services.cache.backend, keys, render(record), record.version, ttl_s)


def drop_ttl(backend: CacheBackend, key: str) -> None:
    """Make an existing key permanent (what PERSIST does), whatever it holds."""
    if not isinstance(backend, CacheBackend):
        raise TypeError(type(backend).__name__)
    assert backend.client.persist(key)  # no CacheBackend method does this: the service never should
    assert backend.client.ttl(key) == -1


def plant_without_ttl(backend: CacheBackend, key: str, value: bytes = b"x") -> None:
    """A plain key with no TTL."""
    if not isinstance(backend, CacheBackend):
        raise TypeError(type(backend).__name__)
    backend.client.set(key, value)  # a plain SET: no TTL
    assert backend.client.ttl(key) == -1


def all_keys(backend: CacheBackend, pattern: str = "*") -> set[str]:
    """Every key matching pattern."""
    return {key for batch in backend.scan(pattern, 1000) for key in batch}


class OutageBackend(FakeCacheBackend):
    """The fakeredis backend with a switch: the public methods named in `failing` ("*": all) raise CacheError."""

    def __init__(self) -> None:
        super().__init__()
        self.failing: set[str] = set()

    def __getattribute__(self, name: str) -> Any:
        attr = super().__getattribute__(name)
        if name.startswith("_") or not callable(attr):
            return attr
        failing: set[str] = super().__getattribute__("failing")
        if "*" in failing or name in failing:

            def fail(*_: object, **__: object) -> None:
                raise CacheError(f"redis down ({name})")

            return fail
        return attr


class RepositoryWithHook:
    """Wraps a repository; `after_get_many` (once) runs between get_many's database read and its return.

    That is where a client write races a job: the job holds what it read, the write lands.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.after_get_many: Callable[[], object] | None = None
        self.get_many_calls: list[list[str]] = []

    def get_many(self, product_ids: list[str]) -> dict[str, ProductRecord]:
        self.get_many_calls.append(list(product_ids))
        records: dict[str, ProductRecord] = self.inner.get_many(product_ids)
        hook, self.after_get_many = self.after_get_many, None
        if hook is not None:
            hook()
        return records

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)  # everything else passes straight through
