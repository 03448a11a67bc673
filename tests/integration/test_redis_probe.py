"""The scrape-time Redis figures on a real redis-server: INFO read, and a hung Redis never holds a scrape."""

from __future__ import annotations

import json
import os
import signal

import pytest

from jollyjet.cache.keys import CacheKeys
from jollyjet.monitoring.history import Totals
from jollyjet.monitoring.redis_probe import RedisProbe
from jollyjet.monitoring.web_totals import TTL_S, published_totals, publisher
from tests.support.redis_server import RedisServer

pytestmark = [pytest.mark.integration, pytest.mark.monitoring]


def test_the_probe_reads_memory_evictions_and_clients(private_redis: RedisServer) -> None:
    raw = private_redis.client()
    raw.config_set("maxmemory", str(64 * 1024 * 1024))
    figures = RedisProbe.for_url(private_redis.url).sample()
    assert figures.up and figures.maxmemory == 64 * 1024 * 1024
    assert 0 < figures.used_memory < figures.maxmemory and figures.connected_clients >= 1
    assert figures.evicted_keys == 0 and figures.memory_ratio is not None and figures.memory_ratio < 1


def test_a_hung_redis_reads_as_down_instead_of_blocking(private_redis: RedisServer) -> None:
    probe = RedisProbe.for_url(private_redis.url)
    assert probe.sample().up
    assert private_redis.process is not None
    os.kill(private_redis.process.pid, signal.SIGSTOP)  # accepts no command, closes nothing
    try:
        assert probe.sample().up is False  # the probe's own 250 ms socket timeout, no retry
    finally:
        os.kill(private_redis.process.pid, signal.SIGCONT)
    assert probe.sample().up
    private_redis.stop()
    assert probe.sample().up is False


def test_web_servers_publish_totals_the_threshold_job_sums(redis_server: RedisServer) -> None:
    keys, client = CacheKeys(f"t{os.getpid()}pub"), redis_server.client()
    assert published_totals(client, keys) is None  # nobody published yet
    first = Totals(0.0, {("product", "hit"): 90.0, ("product", "miss"): 10.0}, hit_latency={0.005: 80.0})
    second = Totals(0.0, {("product", "hit"): 5.0, ("list", "miss"): 5.0}, hit_latency={0.005: 5.0})
    publisher(client, keys)(first)
    # Another server (another host or metrics directory) publishes under its own key.
    client.set(keys.web_totals("otherserver1"), json.dumps(second.as_json(0.0)), ex=TTL_S)
    total = published_totals(client, keys)
    assert total is not None
    assert total.requests == {("product", "hit"): 95.0, ("product", "miss"): 10.0, ("list", "miss"): 5.0}
    assert total.hit_latency == {0.005: 85.0} and total.reads == 110 and total.hits == 95
    assert 0 < client.ttl(keys.web_totals("otherserver1")) <= TTL_S
