"""Small parts of the cache layer: keys, TTL jitter, circuit breaker."""

from __future__ import annotations

import random

import pytest

from jollyjet.cache.fence import BreakerState, CircuitBreaker
from jollyjet.cache.keys import SCHEMA_VERSION, CacheKeys, TtlPolicy, product_id_from_entry_key, query_hash


def test_product_keys_share_a_cluster_hash_tag() -> None:
    keys = CacheKeys("jj").product("0123456789abcdef01234567")
    assert keys.entry == f"jj:v{SCHEMA_VERSION}:product:{{0123456789abcdef01234567}}"
    assert keys.lease == keys.entry + ":lease"
    assert product_id_from_entry_key(keys.entry) == "0123456789abcdef01234567"
    assert product_id_from_entry_key(keys.lease) is None


@pytest.mark.parametrize("raw", ["", "abc", "0123456789ABCDEF01234567", "0123456789abcdef0123456*", "x" * 24, "a b"])
def test_keys_are_never_built_from_raw_text(raw: str) -> None:
    with pytest.raises(ValueError):
        CacheKeys("jj").product(raw)


@pytest.mark.parametrize("prefix", ["", "has space", "a:b", "x" * 33, "{tag}"])
def test_prefix_must_be_plain(prefix: str) -> None:
    with pytest.raises(ValueError):
        CacheKeys(prefix)


def test_query_keys_hash_the_normalized_query_and_carry_the_generation() -> None:
    keys = CacheKeys("jj")
    a = keys.query_result("list", 7, {"category": "x", "page": 1})
    b = keys.query_result("list", 7, {"page": 1, "category": "x"})
    assert a == b  # key order does not matter
    assert ":{products}:list:7:" in a and "category" not in a
    assert keys.query_result("list", 8, {"category": "x", "page": 1}) != a
    assert keys.query_result("count", 7, {"category": "x", "page": 1}) != a
    assert len(query_hash({"q": "x" * 1000})) == 24
    with pytest.raises(ValueError):
        keys.query_result("anything", 1, {})


def test_schema_version_is_part_of_every_key() -> None:
    assert CacheKeys("jj", schema=2).product("0" * 24).entry.startswith("jj:v2:")
    assert CacheKeys("jj", schema=2).generation.startswith("jj:v2:")


def test_ttl_jitter_spreads_within_bounds() -> None:
    policy = TtlPolicy(0.1, rng=random.Random(1))
    ttls = [policy.seconds(1000) for _ in range(500)]
    assert min(ttls) >= 900 and max(ttls) <= 1100
    assert len(set(ttls)) > 50  # not all the same: keys written together expire apart
    assert TtlPolicy(0.0).seconds(60) == 60
    assert TtlPolicy(0.5).seconds(1) >= 1
    with pytest.raises(ValueError):
        TtlPolicy(1.5)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_threshold_and_half_opens_after_cooldown() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=3, cooldown_s=5, clock=clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN and not breaker.allow()
    clock.now = 5.0
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow()  # one trial call
    assert not breaker.allow()  # and only one
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED and breaker.allow()
    assert breaker.times_opened == 1


def test_failed_trial_reopens_for_a_full_cooldown() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=5, clock=clock)
    breaker.record_failure()
    clock.now = 5.0
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    clock.now = 9.9
    assert not breaker.allow()
    clock.now = 10.0
    assert breaker.allow()
    assert breaker.times_opened == 2


def test_success_resets_the_failure_count() -> None:
    breaker = CircuitBreaker(failure_threshold=2, cooldown_s=5, clock=FakeClock())
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
